"""The OpenAPI 3.1 document of ``/api/v1/``, assembled from small Python
parts rather than kept as one JSON file: the error responses, headers and
security are written once and referenced by every operation, the error codes
are one catalogue (``apidocs.components.ERROR_CODES``), and a test compares
the documented paths with the URL configuration, so the description cannot
quietly drift from the code.
"""

from __future__ import annotations

import functools
from typing import Any

import project
from apidocs import components, operations, validation_paths, webhooks_paths

DESCRIPTION = """\
Tollgate validates JSON documents against JSON Schema, metered per API key.

**Authentication**: every operation but this description needs an API key, sent as
`Authorization: Bearer <key>` or `X-API-Key: <key>`.

**Metering**: every call is checked against the key's rate limits and its account's quotas in
one step; a rejected call consumes nothing. Successful answers carry `RateLimit-Policy`,
`RateLimit` (IETF draft-ietf-httpapi-ratelimit-headers, -10 to -12) and `X-RateLimit-Limit`/`-Remaining`/`-Reset` for the
most restrictive policy (absent when the plan has no limits). A 429 or 503 carries
`Retry-After` (seconds).

**Errors** always have one shape, `{"error": {"code", "message", "details"?}}`; branch on
`code`:

"""


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document (built once per process; it only changes with the code)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tollgate API",
            "version": project.__version__,
            "description": DESCRIPTION + components.error_table(),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"apiKeyAuth": []}],
        "tags": [
            {"name": "metering", "description": "Plans, limits and quotas of the caller."},
            {"name": "schemas", "description": "The account's schema registry."},
            {"name": "validation", "description": "Synchronous validation."},
            {"name": "jobs", "description": "Batch validation of large files by background workers."},
            {"name": "webhooks", "description": "Notifications of finished jobs, signed, to your endpoints."},
            {"name": "documentation", "description": "This description."},
        ],
        "paths": idempotent_posts(operations.quota_paths() | validation_paths.paths() | webhooks_paths.paths()),
        "webhooks": webhooks_paths.events(),
        "components": components.components(),
    }


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": (
        "Makes a retry safe: the first answer for a key (per account) is kept 24 h and replayed, byte for "
        "byte with `Idempotent-Replayed: true` and `Original-Request-ID`, for the same request, without charging "
        "it again (the replay "
        "counts one request against the rate limits, no units). The same key with another request: 422 "
        "`idempotency_key_reused`; while the first still runs: 409 `idempotency_in_progress`. 429 and 5xx "
        "answers are not kept."
    ),
}


def idempotent_posts(paths: dict[str, Any]) -> dict[str, Any]:
    """Every POST takes ``Idempotency-Key`` (``idempotency.middleware``): its
    header parameter, the replay header on success, and its 400, 409, 422."""
    for operations_of_path in paths.values():
        post = operations_of_path.get("post")
        if post is None:
            continue
        post["parameters"] = [*post.get("parameters", []), IDEMPOTENCY_KEY]
        responses = post["responses"]
        for status in ("400", "409", "422"):
            responses.setdefault(status, components.response_ref(int(status)))
        for status, response in responses.items():
            if status.startswith("2") and "headers" in response:
                response["headers"] = {
                    **response["headers"],
                    **components.header_refs("Idempotent-Replayed", "Original-Request-ID"),
                }
        post["responses"] = dict(sorted(responses.items()))
    return paths
