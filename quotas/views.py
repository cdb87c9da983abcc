"""The quotas app's API: ping (the cheapest metered call) and usage."""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse

from project.api import api_view, json_response
from quotas.decorators import metered


@api_view("GET", "HEAD")
def ping(request: HttpRequest) -> HttpResponse:
    """Costs one request and one unit, like any plain call."""
    return json_response({"pong": True})


@api_view("GET")
@metered(requests=0, units=0)
def usage(request: HttpRequest) -> HttpResponse:
    """The caller's plan and every limit with what is left; consumes nothing
    and answers even while a limit is exhausted (like GitHub's /rate_limit)."""
    meter = request.meter  # type: ignore[attr-defined]
    record, decision = meter.record, meter.decision
    limits = []
    rates = len(record.subject.rates) if decision else 0
    for index, state in enumerate(decision.states if decision else ()):
        reset_at = decision.reset_at(state)
        limit = {
            "name": state.name,
            "kind": state.kind,
            "limit": state.limit,
            "window_seconds": state.window,
            "remaining": state.remaining,
            "reset_seconds": state.reset,
            "reset_at": datetime.fromtimestamp(reset_at, tz=UTC).isoformat().replace("+00:00", "Z"),
        }
        if state.kind == "quota":
            # Units counted in this window (leased ones until given back).
            limit["used"] = decision.reply.used[index - rates]
        limits.append(limit)
    return json_response(
        {
            "account": record.account_name,
            "plan": record.plan_name,
            "key": {"prefix": record.prefix, "label": record.label},
            "limits": limits,
            "max_upload_bytes": record.max_upload_bytes,
            "max_sync_instances": record.max_sync_instances,
        }
    )
