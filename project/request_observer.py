"""Watches every request from the outside: its metrics (``project.metrics``)
and, with ``LOG_REQUESTS``, one log line (``tollgate.request``) carrying
``route``, ``method``, ``status``, ``duration_ms`` and ``account_id`` as
record attributes, which the JSON log format writes as fields.

It is the first middleware, so the time it measures covers the others
(health probes, static files, the limiter) and every answer they give.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from project.metrics import outcome_of, recorder

log = logging.getLogger("tollgate.request")

# Answers given before URL resolution, by path: the route label they get.
_UNRESOLVED_ROUTES = {
    "/health": "health",
    "/health/ready": "health/ready",
    "/health/live": "health/live",
    "/metrics": "metrics",
}


def route_of(request: HttpRequest) -> str:
    """The URL pattern that answered (``api/v1/jobs/<str:job_id>``), a
    fixed name for answers given before resolution, or ``unmatched``:
    never the path itself, so the label set stays bounded."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.route or match.view_name or "unmatched"
    path = request.path_info
    named = _UNRESOLVED_ROUTES.get(path)
    if named is not None:
        return named
    if path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "static"
    return "unmatched"


class RequestObserverMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.log_requests = bool(getattr(settings, "LOG_REQUESTS", False))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not (recorder.on or self.log_requests):
            return self.get_response(request)
        started = perf_counter()
        response = self.get_response(request)
        seconds = perf_counter() - started
        # The common case inline (this runs on every request): a resolved
        # route, a metered request that was not refused.
        match = request.resolver_match
        route = (match.route or match.view_name or "unmatched") if match is not None else route_of(request)
        meter = getattr(request, "meter", None)
        if recorder.on:
            code = getattr(response, "error_code", None)
            if code is None and meter is not None and meter.charged and meter.decision is not None:
                outcome = "admitted"
            else:
                outcome = outcome_of(
                    code,
                    metered=meter is not None and meter.charged,
                    decided=meter is not None and meter.decision is not None,
                )
            recorder.request(route, request.method or "", response.status_code, outcome, seconds)
        if self.log_requests:
            log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "route": route,
                    "method": request.method,
                    "status": response.status_code,
                    "duration_ms": round(seconds * 1000, 3),
                    "account_id": meter.record.account_id if meter is not None else None,
                },
            )
        return response
