"""The bounds of everything validation writes: the one place they are set.

Whatever a client sends, what Tollgate answers and stores about it has a size
known in advance:

- every string of an error (the message, which echoes the failing value, and
  the two JSON Pointers, which echo property names) is cut to a length
  (:data:`MESSAGE_CHARS`, :data:`POINTER_CHARS`), ending with ``…`` and the
  original length: ``"…" (1000018 characters)``;
- a list of errors has a count cap and a byte cap (:class:`ErrorBudget`): one
  instance's errors (``MAX_ERRORS_PER_INSTANCE``), a synchronous answer
  (``RESPONSE_ERROR_BYTES`` over all its instances), one line of a job's report
  (``RECORD_REPORT_BYTES``), a job's ``first_errors`` (``FIRST_ERRORS`` and
  ``FIRST_ERRORS_BYTES``);
- a job's report is at most ``REPORT_MULTIPLE`` times its upload plus
  ``REPORT_FLOOR_BYTES`` (:func:`report_cap`); past that, lines are left out and
  the job says ``report_truncated``.

What goes to the database is also made storable (:func:`storable`): NUL and
lone surrogates, which PostgreSQL cannot hold in text or jsonb, are written as
visible escapes.
"""

from __future__ import annotations

from typing import Any

from project import exactjson

# Characters kept of an error message. A message quotes the failing value
# (a 1 MB `const` is quoted whole by the engine); 256 keep the gist.
MESSAGE_CHARS = 256
# Characters of the failing value a message quotes (its prefix, then "…").
VALUE_CHARS = 80
# Characters kept of an instance_path or schema_path: deep paths of normal
# keys fit, a 1 MB property name does not.
POINTER_CHARS = 1024
MAX_ERRORS_PER_INSTANCE = 100
# Error bytes of one synchronous answer, over all of its instances.
RESPONSE_ERROR_BYTES = 1024 * 1024
# Error bytes of one line of a job's report (one record).
RECORD_REPORT_BYTES = 64 * 1024
# What a job keeps in its row and shows in GET /jobs/{id}.
FIRST_ERRORS = 100
FIRST_ERRORS_BYTES = 64 * 1024
# A report never exceeds REPORT_MULTIPLE x the upload + REPORT_FLOOR_BYTES.
REPORT_MULTIPLE = 4
REPORT_FLOOR_BYTES = 1024 * 1024
# Bytes counted per error on top of its strings (keys, quotes, commas).
_ERROR_OVERHEAD = 80


def clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    """``text``, or its first ``limit`` characters, ``…`` and its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def bound_error(error: dict[str, Any]) -> dict[str, Any]:
    """``error`` with its message and pointers clipped (in place; returned)."""
    message = error.get("message")
    if isinstance(message, str) and len(message) > MESSAGE_CHARS:
        error["message"] = clip(message)
    for key in ("instance_path", "schema_path", "keyword_location"):
        value = error.get(key)
        if isinstance(value, str) and len(value) > POINTER_CHARS:
            error[key] = clip(value, POINTER_CHARS)
    return error


def error_bytes(error: dict[str, Any]) -> int:
    """About how many bytes ``error`` takes as JSON (its strings plus
    overhead; its params and branches as they are written)."""
    size = _ERROR_OVERHEAD + sum(len(value) for value in error.values() if isinstance(value, str))
    for key in ("params", "branches"):
        value = error.get(key)
        if value:
            size += len(exactjson.dumps(value))
    return size


class ErrorBudget:
    """Room for errors: ``count`` of them and ``size`` bytes in all.

    ``take`` the errors of one instance or record, in order: it returns those
    that fit and whether any were left out. Once the budget is spent, every
    later list comes back empty (and truncated)."""

    __slots__ = ("count", "size")

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size

    def take(self, errors: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        kept: list[dict[str, Any]] = []
        for error in errors:
            cost = error_bytes(error)
            if self.count <= 0 or cost > self.size:
                self.count = 0
                return kept, True
            self.count -= 1
            self.size -= cost
            kept.append(error)
        return kept, False


def report_cap(upload_bytes: int) -> int:
    """The most bytes a job's report may hold for an upload of ``upload_bytes``."""
    return REPORT_MULTIPLE * upload_bytes + REPORT_FLOOR_BYTES


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: NUL as the six characters
    ``\\u0000`` and lone surrogates as ``\\udXXX``."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _storable_value(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(key)): _storable_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable_value(item) for item in value]
    return value


def storable_error(error: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``error`` with every string :func:`storable`, nested ones
    (params, branches) included."""
    return {
        key: storable(value) if isinstance(value, str) else _storable_value(value) if value else value
        for key, value in error.items()
    }
