"""Small helpers shared by the API views: JSON in, JSON out, methods."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from project import exactjson
from project.errors import InvalidJson, MethodNotAllowed

View = Callable[..., HttpResponse]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(exactjson.dumps(data), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def json_body(request: HttpRequest) -> Any:
    """The request body parsed as JSON, integers of any size exact
    (``project.exactjson``); raises InvalidJson (400)."""
    try:
        return exactjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(details={"reason": str(exc)}) from None


def api_view(*methods: str) -> Callable[[View], View]:
    """Mark an API view: CSRF-exempt (it authenticates by key, not cookie),
    answering only ``methods`` and 405 ``method_not_allowed`` otherwise.
    Attributes set on the view (its metering) are kept."""

    allowed = frozenset(methods)

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                raise MethodNotAllowed(headers={"Allow": ", ".join(sorted(allowed))})
            response = view(request, *args, **kwargs)
            if request.method == "HEAD" and not response.streaming:
                # The headers of a GET, no body (gunicorn warns about one).
                length = len(response.content)
                response.content = b""
                response["Content-Length"] = str(length)
            return response

        return csrf_exempt(wrapper)

    return decorate
