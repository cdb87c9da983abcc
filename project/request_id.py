"""One id per request, for clients to quote and operators to grep.

``RequestIdMiddleware`` (first in ``MIDDLEWARE``) takes the client's
``X-Request-ID`` when it is sane (1-128 characters of letters, digits and
``-_.:@/+=``), else makes one (32 hex digits); sets ``request.id``; answers it
in ``X-Request-ID`` on every response; and makes it the current request id
while the request is handled, so that every log line of the request
(``RequestIdFilter``) and every error body (``project.errors``) carry it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
_META_KEY = "HTTP_X_REQUEST_ID"
_SANE = re.compile(r"[A-Za-z0-9\-_.:@/+=]{1,128}")

_current: ContextVar[str | None] = ContextVar("tollgate_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this context, if any."""
    return _current.get()


def new_request_id() -> str:
    return os.urandom(16).hex()


def request_id_for(request: HttpRequest) -> str:
    """The client's id when it is sane, else a new one."""
    sent = request.META.get(_META_KEY)
    if sent and _SANE.fullmatch(sent):
        return sent
    return new_request_id()


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request.id = request_id_for(request)  # type: ignore[attr-defined]
        token = _current.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response[HEADER] = request_id
        return response


class RequestIdFilter(logging.Filter):
    """Gives every record ``request_id`` (None outside a request) and
    ``request_tag`` (`` [<id>]``, or empty) for the text format."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = getattr(record, "request_id", None) or _current.get()
        record.request_id = request_id
        record.request_tag = f" [{request_id}]" if request_id else ""
        return True
