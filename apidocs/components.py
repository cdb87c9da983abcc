"""Reusable parts of the OpenAPI description: the error shape and its codes,
the security schemes, the rate-limit headers and the standard error responses.

``ERROR_CODES`` is the catalogue of every machine ``code`` the API answers
with: the error schemas' ``enum`` and the documentation's table are built from
it, and a test checks that every ``ApiError`` in the code base is in it.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

# code -> (HTTP status, when). Grouped by who raises them.
ERROR_CODES: dict[str, tuple[int, str]] = {
    # project (any endpoint)
    "invalid_json": (400, "The request body is not valid JSON."),
    "not_found": (404, "No such endpoint, or no such object for this account."),
    "method_not_allowed": (405, "The path exists but not with this method (see `Allow`)."),
    "service_unavailable": (503, "Redis or the database did not answer in time (`Retry-After`)."),
    "bad_request": (400, "The request is refused before any view, e.g. a `Host` this service does not serve."),
    "internal_error": (500, "A bug on our side; it has been logged. Never expected: no operation lists it."),
    # quotas (the middleware, before any view)
    "missing_api_key": (401, "No key in `Authorization: Bearer` or `X-API-Key`."),
    "invalid_api_key": (
        401,
        "Malformed, unknown, revoked or expired key, or inactive account (one answer for all).",
    ),
    "rate_limited": (429, "A rate limit of the key would be exceeded; `Retry-After` is long enough."),
    "quota_exceeded": (429, "A quota of the account would be exceeded; `Retry-After` runs to the window's end."),
    "rate_limiter_unavailable": (
        503,
        "Redis is unreachable and `RATELIMIT_FAIL_MODE=closed`: refused rather than served unmetered.",
    ),
    # quotas (usage history)
    "invalid_usage_query": (400, "A parameter of `/usage/history` is malformed or out of range; `details.parameter`."),
    "unknown_key": (404, "No API key of the caller's account has the prefix given in `key`."),
    # validation
    "invalid_request": (400, "A field is missing, of the wrong type or out of range; `details` says which."),
    "invalid_schema": (400, "The schema is not valid for its draft; `details.errors` lists the meta-schema errors."),
    "too_many_instances": (400, "More instances than the plan's `max_sync_instances` in one call."),
    "invalid_upload": (400, "The upload cannot be read in its format."),
    "too_deep": (
        400,
        "An instance nests deeper than `VALIDATION_MAX_DEPTH` (64) levels, or a schema deeper than "
        "`VALIDATION_MAX_SCHEMA_DEPTH` (128); `details.field` says which.",
    ),
    "schema_too_complex": (
        400,
        "The schema's evaluation can expand without bound (a `$ref` loop, or fan-out through "
        "`anyOf`/`oneOf`/`allOf` and `$ref`); `details.reason` says where.",
    ),
    "schema_not_found": (404, "No such schema (name/version) for this account."),
    "job_not_found": (404, "No such job for this account."),
    "schema_exists": (409, "This name and version are registered already; versions are immutable."),
    "schema_id_taken": (409, "Another name of the account defines this `$id`; only its own versions may."),
    "job_finished": (409, "The job has finished and cannot be cancelled."),
    "report_unavailable": (409, "The job has no error report (yet)."),
    "report_expired": (410, "The job's files were deleted after the retention period (`VALIDATION_RETENTION_DAYS`)."),
    "storage_unavailable": (503, "Storage for uploads and reports did not answer; nothing was stored or charged."),
    "length_required": (411, "Send `Content-Length` or a chunked body."),
    "payload_too_large": (413, "The upload is larger than the plan's `max_upload_bytes`."),
    "unsupported_media_type": (415, "The body's content type is not accepted here."),
    "validation_timeout": (
        422,
        "Validating the request took longer than `VALIDATION_SYNC_TIME_LIMIT` (2 s); it was stopped. "
        "The units stay charged.",
    ),
    "validation_crashed": (422, "The validator stopped while validating the request (e.g. out of memory)."),
}


def codes_for(status: int) -> list[str]:
    return sorted(code for code, (code_status, _) in ERROR_CODES.items() if code_status == status)


def error_schema(codes: list[str] | None = None) -> Json:
    """The one error shape; ``codes`` restricts ``code`` to those values."""
    code: Json = {"type": "string", "description": "Stable machine code; branch on this, never on `message`."}
    if codes:
        code["enum"] = codes
    return {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": code,
                    "message": {"type": "string", "description": "For humans; may change."},
                    "details": {"description": "Structured data about the error, by code."},
                    "request_id": {
                        "type": "string",
                        "description": "The request's `X-Request-ID`: quote it to support.",
                    },
                },
            }
        },
    }


def _header(description: str, schema: Json, *, required: bool = False) -> Json:
    return {"description": description, "required": required, "schema": schema}


INTEGER = {"type": "integer", "minimum": 0}
HEADERS: Json = {
    "RateLimit-Policy": _header(
        'IETF httpapi draft -10: every policy of the key, e.g. `"per-minute";q=100;w=60, "daily-quota";q=10000;w=86400`.',
        {"type": "string"},
    ),
    "RateLimit": _header(
        'IETF httpapi draft -10: what remains of each policy and when it is whole again, e.g. `"per-minute";r=42;t=18`.',
        {"type": "string"},
    ),
    "X-Request-ID": _header(
        "The request's id (the client's `X-Request-ID` when sane, else a new one); on every answer.",
        {"type": "string"},
    ),
    "X-RateLimit-Limit": _header("The most restrictive policy's limit.", INTEGER),
    "X-RateLimit-Remaining": _header("What remains of the most restrictive policy.", INTEGER),
    "X-RateLimit-Reset": _header("When the most restrictive policy is whole again (epoch seconds).", INTEGER),
    "Retry-After": _header("Seconds to wait; waiting that long is enough.", INTEGER, required=True),
    "WWW-Authenticate": _header('`Bearer realm="tollgate"`.', {"type": "string"}, required=True),
    "Allow": _header("The methods this path answers.", {"type": "string"}, required=True),
}
RATE_LIMIT_HEADERS = (
    "RateLimit-Policy",
    "RateLimit",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)


def header_refs(*names: str) -> Json:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _error_response(description: str, status: int, *headers: str) -> Json:
    schema_name = f"Error{status}"
    return {
        "description": description,
        "headers": header_refs("X-Request-ID", *headers),
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}},
    }


ERROR_STATUSES = {
    400: ("BadRequest", "The request is invalid; `code` says how.", ()),
    401: ("Unauthorized", "No usable API key.", ("WWW-Authenticate",)),
    404: ("NotFound", "No such endpoint or object.", ()),
    405: ("MethodNotAllowed", "Method not allowed here.", ("Allow",)),
    409: ("Conflict", "The request conflicts with the object's state.", ()),
    410: ("Gone", "It existed and was deleted (retention).", ()),
    411: ("LengthRequired", "The upload has no length.", ()),
    413: ("PayloadTooLarge", "The upload is larger than the plan allows.", ()),
    415: ("UnsupportedMediaType", "The body's content type is not accepted here.", ()),
    422: ("UnprocessableContent", "The request is well-formed but could not be validated in time.", ()),
    429: ("TooManyRequests", "A rate limit or quota would be exceeded; nothing was consumed.", ("Retry-After",)),
    503: ("ServiceUnavailable", "A backing service did not answer; retry after `Retry-After`.", ("Retry-After",)),
}


# What the HTTP server (gunicorn) answers itself, in HTML, before the API
# sees the request: any operation may get these.
SERVER_STATUSES = {
    414: ("UriTooLong", "The request line is longer than the server reads (4094 bytes): shorten the query."),
    431: ("RequestHeaderFieldsTooLarge", "A request header is larger than the server reads (8190 bytes)."),
}


def response_ref(status: int) -> Json:
    name = SERVER_STATUSES[status][0] if status in SERVER_STATUSES else ERROR_STATUSES[status][0]
    return {"$ref": f"#/components/responses/{name}"}


def components() -> Json:
    """``components`` of the document, for the codes registered so far."""
    statuses = sorted({status for status, _ in ERROR_CODES.values()} | {401, 404, 405, 429, 503})
    schemas: Json = {"Error": error_schema()}
    responses: Json = {}
    for status in statuses:
        if status not in ERROR_STATUSES:
            continue
        name, description, headers = ERROR_STATUSES[status]
        schemas[f"Error{status}"] = error_schema(codes_for(status) or None)
        extra = RATE_LIMIT_HEADERS if status == 429 else ()
        responses[name] = _error_response(description, status, *headers, *extra)
    for name, description in SERVER_STATUSES.values():
        responses[name] = {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}
    return {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer tg_…`"},
            "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "`X-API-Key: tg_…`"},
        },
        "headers": HEADERS,
        "schemas": schemas,
        "responses": responses,
    }


def error_table() -> str:
    """The catalogue as a Markdown table, for the document's description."""
    rows = sorted(ERROR_CODES.items(), key=lambda item: (item[1][0], item[0]))
    lines = ["| status | code | when |", "|---|---|---|"]
    lines += [f"| {status} | `{code}` | {when} |" for code, (status, when) in rows]
    return "\n".join(lines)
