"""The webhooks app's operations (``webhooks.views``), and the events
Tollgate sends to a registered endpoint (OpenAPI 3.1 ``webhooks``)."""

from __future__ import annotations

from typing import Any

from apidocs.operations import json_content, operation, success
from apidocs.validation_paths import LOCATION, PAGING, page_of, path_param, with_example
from apidocs.validation_shapes import COUNT, OPTIONAL_STAMP, STAMP

Json = dict[str, Any]

EVENT_NAMES = ["job.succeeded", "job.failed", "job.cancelled"]
ENDPOINT = {
    "type": "object",
    "required": ["id", "url", "events", "active", "created_at", "self"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "url": {"type": "string", "format": "uri"},
        "events": {"type": "array", "items": {"enum": EVENT_NAMES}},
        "active": {"type": "boolean"},
        "created_at": STAMP,
        "self": {"type": "string", "format": "uri"},
    },
}
ENDPOINT_CREATED = {
    "allOf": [ENDPOINT],
    "type": "object",
    "required": ["secret"],
    "properties": {
        "secret": {
            "type": "string",
            "description": "The key of `Tollgate-Signature`; shown in this answer only. Keep it secret.",
        }
    },
}
ENDPOINT_ID = path_param("endpoint_id", {"type": "string", "format": "uuid"}, "The endpoint's id.")
EVENT = {
    "type": "object",
    "required": ["id", "type", "created_at", "data"],
    "properties": {
        "id": {"type": "string", "format": "uuid", "description": "The same on every attempt: drop duplicates by it."},
        "type": {"enum": EVENT_NAMES},
        "created_at": STAMP,
        "data": {
            "type": "object",
            "required": ["job"],
            "properties": {
                "job": {
                    "type": "object",
                    "required": ["id", "path", "status", "schema", "format", "progress", "summary"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "path": {"type": "string"},
                        "status": {"enum": ["succeeded", "failed", "cancelled"]},
                        "schema": {"type": "object"},
                        "format": {"enum": ["ndjson", "json", "csv"]},
                        "progress": {"type": "object", "properties": {"processed": COUNT, "total": COUNT}},
                        "summary": {"type": "object", "properties": {"valid": COUNT, "invalid": COUNT}},
                        "error": {"type": ["object", "null"]},
                        "created_at": STAMP,
                        "started_at": OPTIONAL_STAMP,
                        "finished_at": OPTIONAL_STAMP,
                    },
                }
            },
        },
    },
}
SIGNATURE_DOC = (
    "Each delivery is a POST of the event as JSON with `Tollgate-Event`, `Tollgate-Event-Id` and "
    "`Tollgate-Signature: t=<unix>,v1=<hex>`, where `v1` is the HMAC-SHA256, keyed with the endpoint's "
    "`secret`, of `<t>.<body>` (the raw body). Verify it in constant time and refuse an old `t`. "
    "Answer 2xx within 5 s; anything else is retried with exponential backoff (30 s, doubling, at most "
    "6 h apart) for 72 h, so an event may arrive more than once: drop duplicates by `id`."
)


def paths() -> Json:
    register = {
        "type": "object",
        "required": ["url", "events"],
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": 2000},
            "events": {"type": "array", "minItems": 1, "items": {"enum": EVENT_NAMES}},
        },
    }
    return {
        "/api/v1/webhooks": {
            "get": operation(
                "listWebhooks",
                "The account's webhook endpoints, newest first",
                {200: success("A page of endpoints.", page_of(ENDPOINT))},
                tag="webhooks",
                errors=(400,),
                parameters=list(PAGING),
            ),
            "post": operation(
                "createWebhook",
                "Register an endpoint for job events",
                {201: success("Registered; `secret` is shown this once.", ENDPOINT_CREATED, headers=LOCATION)},
                tag="webhooks",
                errors=(400, 409),
                description=(
                    "Cost: one request, no units. At most 20 endpoints per account (409 `webhook_limit_reached`). "
                    + SIGNATURE_DOC
                ),
                request_body={
                    "required": True,
                    "content": with_example(
                        json_content(register), {"url": "https://example.com/hooks/tollgate", "events": EVENT_NAMES}
                    ),
                },
            ),
        },
        "/api/v1/webhooks/{endpoint_id}": {
            "get": operation(
                "getWebhook",
                "One webhook endpoint",
                {200: success("The endpoint (without its secret).", ENDPOINT)},
                tag="webhooks",
                errors=(404,),
                parameters=[ENDPOINT_ID],
            ),
            "delete": operation(
                "deleteWebhook",
                "Delete a webhook endpoint and its pending deliveries",
                {204: success("Deleted.")},
                tag="webhooks",
                errors=(404,),
                parameters=[ENDPOINT_ID],
            ),
        },
    }


def events() -> Json:
    """The document's ``webhooks``: what Tollgate sends to an endpoint."""
    signature = {"required": True, "schema": {"type": "string"}}
    return {
        "jobEvent": {
            "post": {
                "operationId": "jobEvent",
                "summary": "A job finished (sent to your endpoint)",
                "description": SIGNATURE_DOC,
                "tags": ["webhooks"],
                "parameters": [
                    {"name": "Tollgate-Signature", "in": "header", **signature, "example": "t=1767225600,v1=5257a8…"},
                    {"name": "Tollgate-Event", "in": "header", "required": True, "schema": {"enum": EVENT_NAMES}},
                    {"name": "Tollgate-Event-Id", "in": "header", "required": True, "schema": {"type": "string"}},
                ],
                "requestBody": {"required": True, "content": json_content(EVENT)},
                "responses": {"2XX": {"description": "Received; anything else is retried."}},
            }
        }
    }
