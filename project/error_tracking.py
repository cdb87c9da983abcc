"""Optional Sentry error tracking (``SENTRY_DSN``; unset, sentry-sdk is never
initialised and costs nothing).

Every event and breadcrumb passes through :func:`redact_event` before it is
sent: each string in it, at any depth (message, exception values, frame
variables, request data, breadcrumbs), goes through the same redaction as the
logs and Django's error reports (``project.reporting.redact_text``), and the
request's ``Authorization``, ``X-API-Key`` and cookie headers are removed.
Personal data is not sent (``send_default_pii`` off).
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.rq import RqIntegration

from project.reporting import redact_text

# Request headers that carry credentials: never sent, whatever they hold.
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization"})
FILTERED = "[Filtered]"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


def redact_event(event: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    """``event`` with every secret removed (Sentry's ``before_send`` and
    ``before_breadcrumb``)."""
    headers = (event.get("request") or {}).get("headers")
    if isinstance(headers, dict):
        for name in list(headers):
            if name.lower() in SECRET_HEADERS:
                headers[name] = FILTERED
    cleaned: dict[str, Any] = _clean(event)
    return cleaned


def sentry_init(*, dsn: str, environment: str, traces_sample_rate: float = 0.0) -> None:
    """Start sending errors (and ERROR log records) of this process to Sentry."""
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,
        traces_sample_rate=traces_sample_rate,
        integrations=[DjangoIntegration(), RqIntegration(), LoggingIntegration()],
        before_send=redact_event,  # type: ignore[arg-type]
        before_breadcrumb=redact_event,  # type: ignore[arg-type]
    )
