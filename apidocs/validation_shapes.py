"""The shapes of the validation app's answers (``validation.representations``
and ``validation.services``) as JSON Schema, for the OpenAPI description."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"}
VERSION = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"}
STAMP = {"type": "string", "format": "date-time"}
OPTIONAL_STAMP = {"type": ["string", "null"], "format": "date-time"}
COUNT = {"type": "integer", "minimum": 0}
LINK = {"type": ["string", "null"], "format": "uri"}

ERROR_ITEM = {
    "type": "object",
    "required": ["instance_path", "schema_path", "keyword", "message"],
    "properties": {
        "instance_path": {"type": "string", "description": "JSON Pointer into the instance."},
        "schema_path": {"type": "string", "description": "JSON Pointer to the failing keyword, through `$ref`."},
        "keyword_location": {
            "type": "string",
            "description": "The failing keyword's absolute URI (`tollgate://schemas/…#/…`, an `$id`'s, "
            "`json-schema:///#/…` for an inline schema without `$id`).",
        },
        "keyword": {"type": ["string", "null"], "description": "The keyword that failed; null for a record error."},
        "params": {
            "type": "object",
            "description": "Machine-readable parameters (`missingProperty`, `allowedValues`, `allowedValue`, "
            "`limit`, `type`, `pattern`, `format`, `additionalProperties`, …): lists cut to 20 items, strings "
            "to 80 characters (`truncated: true`).",
        },
        "branches": {
            "type": "array",
            "description": "`anyOf`/`oneOf`: why each branch failed (at most 8 branches, 5 errors each).",
            "items": {"type": "array", "items": {"type": "object"}},
        },
        "reference": {"type": "string", "description": "`unresolved_reference`: the absolute URI that failed."},
        "schema": {"type": "string", "description": "In a bundle: the `name/version` the error is about."},
        "message": {
            "type": "string",
            "description": "Cut to 256 characters, then `… (N characters)`; pointers to 1024.",
        },
        "code": {
            "description": "Record errors only: the record never reached the schema, or was stopped.",
            "enum": [
                "invalid_json",
                "invalid_csv",
                "too_deep",
                "validation_timeout",
                "validation_crashed",
                "unresolved_reference",
            ],
        },
    },
}
RESULT = {
    "type": "object",
    "required": ["valid", "errors"],
    "properties": {
        "valid": {"type": "boolean"},
        "errors": {"type": "array", "items": ERROR_ITEM, "maxItems": 100},
        "errors_truncated": {"const": True},
    },
}
SCHEMA_SUMMARY = {
    "type": "object",
    "required": ["name", "version", "uri", "draft", "created_at"],
    "properties": {
        "name": NAME,
        "version": VERSION,
        "uri": {"type": "string", "description": "`tollgate://schemas/{name}/{version}`: what `$ref` uses."},
        "draft": {"type": "string", "examples": ["2020-12", "7"]},
        "references": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Each `$id` URI its references resolved to, pinned when it was registered: "
            "`{uri: name/version}`.",
        },
        "created_at": STAMP,
    },
}
# The JSON Schema specification's output formats (2020-12 core, 12.4).
OUTPUT_UNIT: Json = {
    "type": "object",
    "required": ["valid", "keywordLocation", "instanceLocation"],
    "properties": {
        "valid": {"type": "boolean"},
        "keywordLocation": {"type": "string"},
        "absoluteKeywordLocation": {"type": "string"},
        "instanceLocation": {"type": "string"},
        "error": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
        "truncated": {"const": True},
    },
}
OUTPUT = {
    "anyOf": [{"type": "object", "required": ["valid"], "properties": {"valid": {"type": "boolean"}}}, OUTPUT_UNIT]
}
SCHEMA_FULL = {
    "allOf": [SCHEMA_SUMMARY],
    "required": ["schema"],
    "properties": {"schema": {"type": ["object", "boolean"]}},
}
JOB_SUMMARY = {
    "type": "object",
    "required": ["id", "url", "status", "schema", "format", "progress", "summary", "created_at"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "url": {"type": "string", "format": "uri"},
        "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "schema": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "format": {"enum": ["ndjson", "json", "csv"]},
        "output": {"enum": ["list", "flag", "basic", "detailed"]},
        "progress": {
            "type": "object",
            "required": ["processed", "total"],
            "properties": {"processed": COUNT, "total": COUNT},
        },
        "summary": {
            "type": "object",
            "required": ["valid", "invalid"],
            "properties": {"valid": COUNT, "invalid": COUNT},
        },
        "created_at": STAMP,
        "started_at": OPTIONAL_STAMP,
        "finished_at": OPTIONAL_STAMP,
    },
}
JOB_FULL = {
    "allOf": [JOB_SUMMARY],
    "required": [
        "errors",
        "errors_url",
        "report_truncated",
        "error",
        "upload_bytes",
        "attempts",
        "units",
        "updated_at",
    ],
    "properties": {
        "errors": {
            "type": "array",
            "maxItems": 100,
            "description": "The first errors (at most 100 and 64 KiB), each with its `record`.",
            "items": {"type": "object", "required": ["record"]},
        },
        "errors_url": LINK,
        "report_truncated": {
            "type": "boolean",
            "description": "The report reached its cap (4 x the upload + 1 MiB): later lines were left out.",
        },
        "error": {
            "type": ["object", "null"],
            "description": (
                "Why a failed job failed: `{code, message}`; `code` is `worker_lost`, `too_many_timeouts`, "
                "`internal_error`, or that of a schema refused when the job ran (`schema_too_complex`, …)."
            ),
        },
        "upload_bytes": COUNT,
        "attempts": COUNT,
        "units": {
            "type": "object",
            "required": ["reserved", "refunded"],
            "properties": {"reserved": COUNT, "refunded": COUNT},
        },
        "updated_at": STAMP,
    },
}
JOB_ACCEPTED = {
    "type": "object",
    "required": ["id", "status", "url", "records"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"const": "queued"},
        "url": {"type": "string", "format": "uri"},
        "records": {"type": "integer", "minimum": 1},
    },
}
