"""``LOG_FORMAT=json``: one JSON object per line, for log shippers (Heroku log
drains, Render, Datadog, Loki).

Each line has ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``
and ``message``; ``request_id`` when the record carries one (the request-id
filter sets it); ``route``, ``method``, ``status``, ``duration_ms`` and
``account_id`` when the record carries them (the request lines of
``project.request_observer``); ``exception`` with the traceback. The handler's
redaction filter (``project.reporting.RedactSecretsFilter``) has already
rewritten the message and the traceback: this formatter adds no other text of
the record's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

# Record attributes written as fields when a record has them (not None).
FIELDS = ("request_id", "route", "method", "status", "duration_ms", "account_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        line: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()
