"""The one error shape of the API, and the exceptions that produce it.

Every error answer under ``/api/`` is::

    {"error": {"code": "quota_exceeded", "message": "...", "details": {...},
               "request_id": "...", "doc_url": "/api/docs/#error-quota_exceeded"}}

``doc_url`` is the code's entry in the docs page, under ``API_DOCS_URL``
(``/api/docs/`` unless an absolute URL is set).

``code`` is stable and greppable: clients branch on it, never on ``message``.
Views and services raise an :class:`ApiError` (or a subclass); the
``ApiErrorMiddleware`` turns it into a response, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.http import HttpResponse

from project import exactjson
from project.request_id import current_request_id


class ApiError(Exception):
    """An error with a machine ``code``, an HTTP ``status`` and optional
    ``details`` (JSON-serialisable) and response ``headers``."""

    status: int = 400
    code: str = "bad_request"
    message: str = "The request is invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def response(self) -> HttpResponse:
        return error_response(self.status, self.code, self.message, details=self.details, headers=self.headers)


class NotFound(ApiError):
    status, code, message = 404, "not_found", "Nothing is here."


class MethodNotAllowed(ApiError):
    status, code, message = 405, "method_not_allowed", "This method is not allowed here."


class InvalidJson(ApiError):
    status, code, message = 400, "invalid_json", "The request body is not valid JSON."


class ServiceUnavailable(ApiError):
    """A dependency (Redis, the database) did not answer in time; the client may retry."""

    status, code, message = 503, "service_unavailable", "A backing service is unavailable."

    def __init__(self, message: str | None = None, *, retry_after: int = 1, **kwargs: Any) -> None:
        headers = {"Retry-After": str(retry_after), **kwargs.pop("headers", {})}
        super().__init__(message, headers=headers, **kwargs)


def doc_url(code: str) -> str:
    """Where the docs page explains ``code``."""
    return f"{getattr(settings, 'API_DOCS_URL', '/api/docs/')}#error-{code}"


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
    deliberate: bool = True,
) -> HttpResponse:
    """The JSON error response; ``details`` is left out when None, and
    ``request_id`` (the request's ``X-Request-ID``) outside a request.

    A ``deliberate`` answer (every 4xx, a 503 for an outage) is logged, if at
    all, where it is decided, so Django's request logger is told to skip it;
    an answer to an unexpected error (``deliberate=False``: a 500) is left
    for Django to log with its traceback and to mail to ``ADMINS``."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    request_id = current_request_id()
    if request_id is not None:
        body["request_id"] = request_id
    body["doc_url"] = doc_url(code)
    response = HttpResponse(exactjson.dumps({"error": body}), status=status, content_type="application/json")
    response.error_code = code  # type: ignore[attr-defined]  # read by project.request_observer
    for name, value in (headers or {}).items():
        response[name] = value
    if deliberate:
        # Keep django.request from logging every 503 of an outage as an ERROR
        # (and mailing it to ADMINS).
        response._has_been_logged = True  # type: ignore[attr-defined]
    return response
