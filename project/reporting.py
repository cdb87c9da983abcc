"""Keep secrets out of logs, error pages and 500 e-mails.

Django's SafeExceptionReporterFilter hides settings whose *names* look secret,
but ``REDIS_URL`` and ``CACHES["default"]["LOCATION"]`` carry the Redis password
inside an innocent-looking value, and so do local variables in redis-py's
frames. Here every string that leaves through a log record or an exception
report is passed through :func:`project.redis.redact`, which removes URL
passwords and the configured Redis password, database password and bucket
secret key wherever they appear.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils.safestring import SafeString, mark_safe
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from project.redis import password_of, redact


def _secrets() -> tuple[str, ...]:
    """The Redis passwords (of both roles, their Sentinels and Cluster), the
    database's and the bucket's secret key."""
    storage_options = settings.STORAGES.get("default", {}).get("OPTIONS", {})
    return (
        password_of(getattr(settings, "REDIS_URL", "")),
        password_of(getattr(settings, "QUEUE_REDIS_URL", "")),
        getattr(settings, "REDIS_PASSWORD", ""),
        getattr(settings, "REDIS_SENTINEL_PASSWORD", ""),
        settings.DATABASES.get("default", {}).get("PASSWORD") or "",
        storage_options.get("secret_key") or "",
    )


def redact_text(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    return redact(text, _secrets())


class RedactSecretsFilter(logging.Filter):
    """A logging filter that rewrites each record's message without secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


class _Shown(str):
    """A value already rendered for a report: its repr is itself."""

    def __repr__(self) -> str:
        return str(self)


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Also redacts URL passwords in setting values and in frame variables."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return redact_text(cleansed)
        return cleansed

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        cleaned = []
        for name, value in variables:
            if self.hidden_settings.search(str(name)):
                value = self.cleansed_substitute
            elif isinstance(value, dict):
                value = self.cleanse_setting(name, value)
            cleaned.append((name, _Shown(redact_text(repr(value)))))
        return cleaned


class RedactingExceptionReporter(ExceptionReporter):
    """Renders Django's report (page and e-mail) with secrets removed, whatever
    the exception message or a variable's repr happens to contain."""

    def get_traceback_html(self) -> SafeString:
        return mark_safe(redact_text(str(super().get_traceback_html())))  # noqa: S308 (Django's own HTML, redacted)

    def get_traceback_text(self) -> SafeString:
        return mark_safe(redact_text(str(super().get_traceback_text())))  # noqa: S308
