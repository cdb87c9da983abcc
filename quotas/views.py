"""The quotas app's API: ping (the cheapest metered call), usage and its
history."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse

from project.api import api_view, json_response
from quotas.decorators import metered
from quotas.exceptions import InvalidUsageQuery, UnknownKey
from quotas.history import GRANULARITIES, usage_history
from quotas.models import ApiKey

# The history's range when none is asked for: the last 30 UTC days.
HISTORY_DAYS = 30


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


def _day(request: HttpRequest, name: str, default: dt.date) -> dt.date:
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        return dt.date.fromisoformat(raw) if len(raw) == 10 else _bad_day(name)
    except ValueError:
        return _bad_day(name)


def _bad_day(name: str) -> dt.date:
    raise InvalidUsageQuery(name, f"'{name}' must be a date as YYYY-MM-DD.")


@api_view("GET")
@metered(requests=0, units=0)
def usage_history_view(request: HttpRequest) -> HttpResponse:
    """The account's usage per UTC day or month, from the ledger; free like
    ``usage``. ``from``/``to`` (inclusive, default the last 30 days; ``from``
    after ``to`` is an empty range), ``granularity`` (``day`` or ``month``),
    ``key`` (a key prefix of the account: that key's usage alone). Periods
    without usage are left out, so the answer is as long as the ledger's
    rows whatever the range."""
    record = request.meter.record  # type: ignore[attr-defined]
    today = datetime.now(tz=UTC).date()
    until = _day(request, "to", today)
    since = _day(request, "from", until - dt.timedelta(days=HISTORY_DAYS - 1))
    granularity = request.GET.get("granularity", "day")
    if granularity not in GRANULARITIES:
        raise InvalidUsageQuery("granularity", "'granularity' must be 'day' or 'month'.")
    key = None
    prefix = request.GET.get("key")
    if prefix is not None:
        key = ApiKey.objects.filter(account_id=record.account_id, prefix=prefix).values("pk", "prefix", "label").first()
        if key is None:
            raise UnknownKey()
    periods = usage_history(
        account_id=record.account_id,
        since=since,
        until=until,
        granularity=granularity,
        key_id=key["pk"] if key else None,
        fill=False,
    )
    return json_response(
        {
            "account": record.account_name,
            "granularity": granularity,
            "from": since.isoformat(),
            "to": until.isoformat(),
            "key": {"prefix": key["prefix"], "label": key["label"]} if key else None,
            "periods": [
                {
                    "period": period.label(granularity),
                    "requests": period.requests,
                    "units": period.units,
                    "refunded": period.refunded,
                }
                for period in periods
            ],
            "total": {
                "requests": sum(period.requests for period in periods),
                "units": sum(period.units for period in periods),
                "refunded": sum(period.refunded for period in periods),
            },
        }
    )
