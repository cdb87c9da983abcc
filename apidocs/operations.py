"""How one operation is described, and the quotas app's operations (ping,
usage) plus the document's own.

Every metered operation answers 401 (no usable key), 429 (a limit; not for
``usage``, which consumes nothing) and 503 (Redis or the database did not
answer), and its success carries the rate-limit headers. Every operation may
get the HTTP server's own 414 and 431 (``components.SERVER_STATUSES``).
"""

from __future__ import annotations

from typing import Any

from apidocs.components import RATE_LIMIT_HEADERS, SERVER_STATUSES, header_refs, response_ref

Json = dict[str, Any]


def json_content(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def success(
    description: str, schema: Json | None = None, *, content: Json | None = None, headers: Json | None = None
) -> Json:
    """A success response with the rate-limit headers (sent when the plan has
    limits, hence not required) and ``headers``; a JSON body of ``schema``,
    or ``content`` as given."""
    response: Json = {
        "description": description,
        "headers": header_refs("X-Request-ID", *RATE_LIMIT_HEADERS) | (headers or {}),
    }
    if schema is not None:
        response["content"] = json_content(schema)
    if content is not None:
        response["content"] = content
    return response


def operation(
    operation_id: str,
    summary: str,
    responses: dict[int, Json],
    *,
    tag: str,
    description: str = "",
    errors: tuple[int, ...] = (),
    limited: bool = True,
    metered: bool = True,
    parameters: list[Json] | None = None,
    request_body: Json | None = None,
) -> Json:
    """An operation; ``errors`` lists the statuses of its own error answers,
    on top of the metering ones (401, 429 when ``limited``, 503)."""
    statuses = set(errors) | set(SERVER_STATUSES)
    if metered:
        statuses |= {401, 503} | ({429} if limited else set())
    described: Json = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": {str(status): body for status, body in sorted(responses.items())}
        | {str(status): response_ref(status) for status in sorted(statuses)},
    }
    if description:
        described["description"] = description
    if not metered:
        described["security"] = []
    if parameters:
        described["parameters"] = parameters
    if request_body:
        described["requestBody"] = request_body
    return described


LIMIT = {
    "type": "object",
    "required": ["name", "kind", "limit", "window_seconds", "remaining", "reset_seconds", "reset_at"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "examples": ["per-minute", "daily-quota"]},
        "kind": {"enum": ["rate", "quota"]},
        "limit": {"type": "integer", "minimum": 1},
        "window_seconds": {"type": "integer", "minimum": 1},
        "remaining": {"type": "integer", "minimum": 0},
        "reset_seconds": {"type": "integer", "minimum": 0},
        "reset_at": {"type": "string", "format": "date-time"},
        "used": {
            "type": "integer",
            "minimum": 0,
            "description": "Quotas only: units counted in the current window (leased ones until given back).",
        },
    },
}
TOTALS = {
    "requests": {"type": "integer", "description": "Requests admitted."},
    "units": {"type": "integer", "description": "Quota units consumed, net of refunds."},
    "refunded": {"type": "integer", "minimum": 0, "description": "Units given back by refunds."},
}
USAGE_HISTORY = {
    "type": "object",
    "required": ["account", "granularity", "from", "to", "key", "periods", "total"],
    "additionalProperties": False,
    "properties": {
        "account": {"type": "string"},
        "granularity": {"enum": ["day", "month"]},
        "from": {"type": "string", "format": "date"},
        "to": {"type": "string", "format": "date"},
        "key": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["prefix", "label"],
                    "additionalProperties": False,
                    "properties": {"prefix": {"type": "string"}, "label": {"type": "string"}},
                },
            ]
        },
        "periods": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["period", "requests", "units", "refunded"],
                "additionalProperties": False,
                "properties": {
                    "period": {"type": "string", "examples": ["2026-11-26", "2026-11"]},
                    **TOTALS,
                },
            },
        },
        "total": {
            "type": "object",
            "required": ["requests", "units", "refunded"],
            "additionalProperties": False,
            "properties": TOTALS,
        },
    },
}


def _history_parameter(name: str, schema: Json, description: str, example: Any = None) -> Json:
    parameter: Json = {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
    if example is not None:
        parameter["example"] = example
    return parameter


HISTORY_PARAMETERS = [
    _history_parameter(
        "from",
        {"type": "string", "format": "date"},
        "First UTC day (default: 29 days before `to`); after `to`: an empty range.",
        "2026-11-01",
    ),
    _history_parameter(
        "to", {"type": "string", "format": "date"}, "Last UTC day, inclusive (default: today).", "2026-11-30"
    ),
    _history_parameter("granularity", {"enum": ["day", "month"], "default": "day"}, "Per UTC day or per UTC month."),
    _history_parameter(
        "key", {"type": "string"}, "A key prefix of the account: that key's usage alone (refunds belong to no key)."
    ),
]
USAGE = {
    "type": "object",
    "required": ["account", "plan", "key", "limits", "max_upload_bytes", "max_sync_instances"],
    "additionalProperties": False,
    "properties": {
        "account": {"type": "string"},
        "plan": {"type": "string"},
        "key": {
            "type": "object",
            "required": ["prefix", "label"],
            "additionalProperties": False,
            "properties": {"prefix": {"type": "string"}, "label": {"type": "string"}},
        },
        "limits": {"type": "array", "items": LIMIT},
        "max_upload_bytes": {"type": "integer", "minimum": 1},
        "max_sync_instances": {"type": "integer", "minimum": 1},
    },
}


PONG = {"type": "object", "required": ["pong"], "additionalProperties": False, "properties": {"pong": {"const": True}}}


def quota_paths() -> Json:
    return {
        "/api/v1/ping": {
            "get": operation(
                "ping",
                "The cheapest metered call",
                {200: success("Pong.", PONG)},
                tag="metering",
                description="Costs one request and one quota unit, like any plain call.",
            ),
            "head": operation(
                "pingHead",
                "Ping without a body",
                {200: success("Pong (headers only).")},
                tag="metering",
            ),
        },
        "/api/v1/usage": {
            "get": operation(
                "usage",
                "The caller's plan and what is left of every limit",
                {200: success("The key's plan, limits and quotas.", USAGE)},
                tag="metering",
                limited=False,
                description="Consumes nothing and answers even while a limit is exhausted.",
            ),
        },
        "/api/v1/usage/history": {
            "get": operation(
                "usageHistory",
                "The account's usage per UTC day or month, from the ledger",
                {
                    200: success(
                        "The days (or months) of the range with usage, in order (the others are left out).",
                        USAGE_HISTORY,
                    )
                },
                tag="metering",
                limited=False,
                errors=(400, 404),
                parameters=HISTORY_PARAMETERS,
                description=(
                    "Consumes nothing, like `/usage`. The ledger is written from Redis about every second "
                    "(`USAGE_FLUSH_INTERVAL`): the last second of usage shows up on the next read."
                ),
            ),
        },
        "/api/v1/openapi.json": {
            "get": operation(
                "openapi",
                "This description",
                {200: {"description": "OpenAPI 3.1.", "content": json_content({"type": "object"})}},
                tag="documentation",
                metered=False,
                description="Needs no key and is not metered. A page for humans is at `/api/docs/`.",
            ),
        },
    }
