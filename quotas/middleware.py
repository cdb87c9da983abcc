"""Authenticates and meters every request under /api/.

The middleware is thin: it reads the key, asks ``quotas.meter`` for the
key's record and charges it, and turns what those raise into responses.
Reporting is apart from enforcement: the decision is stored on the request
(``request.meter``) and turned into headers on the way out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from project.errors import ApiError
from quotas.decorators import DEFAULT
from quotas.exceptions import MissingApiKey
from quotas.headers import add_headers
from quotas.meter import RequestMeter, process_meter

API_PREFIX = "/api/"


def request_key(request: HttpRequest) -> str:
    """The API key of the request: ``Authorization: Bearer`` first, then
    ``X-API-Key``. Raises MissingApiKey."""
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    key = request.META.get("HTTP_X_API_KEY", "").strip()
    if key:
        return key
    raise MissingApiKey()


class QuotaMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        meter: RequestMeter | None = getattr(request, "meter", None)
        if meter is None:
            return response
        if not meter.charged:
            # A view that meters itself answered before charging (bad input):
            # the request still counts against the rate limits.
            try:
                meter.charge(requests=1, units=0)
            except ApiError as error:
                return error.response()
        if meter.decision is not None:
            add_headers(response, meter.decision)
        return response

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        if not request.path_info.startswith(API_PREFIX):
            return None
        metering = getattr(view_func, "metering", DEFAULT)
        if metering.exempt:
            return None
        try:
            process = process_meter()
            meter = RequestMeter(process, process.authenticate(request_key(request)))
            request.meter = meter  # type: ignore[attr-defined]
            if not metering.in_view:
                meter.charge(requests=metering.requests, units=metering.units)
        except ApiError as error:
            return error.response()
        return None
