"""The validation app's operations (issue 4): the schema registry,
synchronous validation and batch jobs, as ``validation.views`` answers them.

Shapes follow ``validation.representations`` and ``validation.services``;
the schemathesis test sends generated requests to the live service and fails
on any answer that does not match, so a change there shows up here.
"""

from __future__ import annotations

from typing import Any

from apidocs.operations import json_content, operation, success
from apidocs.validation_shapes import (
    COUNT,
    JOB_ACCEPTED,
    JOB_FULL,
    JOB_SUMMARY,
    LINK,
    NAME,
    OUTPUT,
    RESULT,
    SCHEMA_FULL,
    SCHEMA_SUMMARY,
    VERSION,
)

Json = dict[str, Any]


def page_of(item: Json) -> Json:
    return {
        "type": "object",
        "required": ["results", "count", "page", "page_size", "next", "previous"],
        "properties": {
            "results": {"type": "array", "items": item},
            "count": COUNT,
            "page": {"type": "integer", "minimum": 1},
            "page_size": {"type": "integer", "minimum": 1, "maximum": 100},
            "next": LINK,
            "previous": LINK,
        },
    }


def query(name: str, schema: Json, description: str, example: Any = None) -> Json:
    """An optional query parameter; sent empty, it is ignored (the default)."""
    parameter = {
        "name": name,
        "in": "query",
        "required": False,
        "allowEmptyValue": True,
        "schema": schema,
        "description": description,
    }
    if example is not None:
        parameter["example"] = example
    return parameter


def path_param(name: str, schema: Json, description: str, example: Any = None) -> Json:
    parameter = {"name": name, "in": "path", "required": True, "schema": schema, "description": description}
    if example is not None:
        parameter["example"] = example
    return parameter


# The examples name one schema, ``orders/1``, so that they work together
# against an account that registered it (the schemathesis test does).
ORDER_SCHEMA = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
EXAMPLE_RECORDS = '{"id": 1}\n{"id": "two"}\n'


def with_example(content: Json, example: Any) -> Json:
    return {media: {**body, "example": example} for media, body in content.items()}


PAGING = [
    query("page", {"type": "integer", "minimum": 1}, "1-based page number."),
    query("page_size", {"type": "integer", "minimum": 1}, "Items per page (default 50, at most 100)."),
]
JOB_ID = path_param("job_id", {"type": "string", "format": "uuid"}, "The job's id.")
LOCATION = {"Location": {"description": "The new object's URL.", "required": True, "schema": {"type": "string"}}}
RAW = {"schema": {"type": "string", "format": "binary"}}


def _schema_paths() -> Json:
    register = {
        "type": "object",
        "required": ["name", "version", "schema"],
        "properties": {"name": NAME, "version": VERSION, "schema": {"type": ["object", "boolean"]}},
    }
    return {
        "/api/v1/schemas": {
            "get": operation(
                "listSchemas",
                "The account's schemas, by name, newest version first",
                {200: success("A page of schemas.", page_of(SCHEMA_SUMMARY))},
                tag="schemas",
                errors=(400,),
                parameters=[*PAGING, query("name", {"type": "string"}, "Only versions of this name.")],
            ),
            "post": operation(
                "registerSchema",
                "Register a schema version (immutable)",
                {201: success("Registered.", SCHEMA_FULL, headers=LOCATION)},
                tag="schemas",
                errors=(400, 404, 409, 413),
                description=(
                    "Cost: one request, no units. Another schema may `$ref` it by its `uri` or by any `$id` it "
                    "defines (409 `schema_id_taken` when another name of the account defines that `$id`; a new "
                    "version of the same name may). Every `$ref` that cannot resolve is listed in 400 "
                    "`invalid_schema` (`details.errors[]`, code `unresolved_reference`, with its pointer)."
                ),
                request_body={
                    "required": True,
                    "content": with_example(
                        json_content(register), {"name": "orders", "version": "2", "schema": ORDER_SCHEMA}
                    ),
                },
            ),
        },
        "/api/v1/schemas/bundle": {
            "post": operation(
                "registerSchemaBundle",
                "Register several schemas at once: any order, cycles allowed, all or nothing",
                {
                    201: success(
                        "Registered, in the order sent.",
                        {
                            "type": "object",
                            "required": ["results"],
                            "properties": {"results": {"type": "array", "items": SCHEMA_FULL}},
                        },
                    )
                },
                tag="schemas",
                errors=(400, 409, 413),
                description=(
                    "Cost: one request, no units. At most 100 schemas. Every unresolvable `$ref` of every schema "
                    "is listed at once (each error names its `schema` and the pointer of its `$ref`)."
                ),
                request_body={
                    "required": True,
                    "content": with_example(
                        json_content(
                            {
                                "type": "object",
                                "required": ["schemas"],
                                "properties": {"schemas": {"type": "array", "minItems": 1, "items": register}},
                            }
                        ),
                        {"schemas": [{"name": "orders", "version": "3", "schema": ORDER_SCHEMA}]},
                    ),
                },
            ),
        },
        "/api/v1/schemas/{name}/{version}": {
            "get": operation(
                "getSchema",
                "One schema version (`latest`: the newest)",
                {200: success("The schema.", SCHEMA_FULL)},
                tag="schemas",
                errors=(400, 404),
                parameters=[
                    path_param("name", {"type": "string"}, "The schema's name.", "orders"),
                    path_param("version", {"type": "string"}, "A version, or `latest`.", "1"),
                    query(
                        "bundle",
                        {"enum": ["true", "false"]},
                        "`true`: the schema with every schema it references embedded in `$defs` (`definitions` "
                        "before 2019-09) by `$id`, usable offline by any validator (2020-12 bundling).",
                    ),
                ],
            ),
        },
    }


def _validate_paths() -> Json:
    reference = {
        "description": "`name/version` (or `name/latest`) of a registered schema, or an inline schema.",
        "type": ["string", "object", "boolean"],
    }
    # One object, not a oneOf of two: client generators turn this into one
    # model with two optional fields (the service answers 400 when both or
    # neither are sent).
    body = {
        "type": "object",
        "required": ["schema"],
        "description": "Send exactly one of `instance` and `instances`.",
        "properties": {
            "schema": reference,
            "instance": {"description": "One instance (any JSON value)."},
            "instances": {"type": "array", "minItems": 1, "items": {}, "description": "Several instances."},
        },
    }
    many = {
        "type": "object",
        "required": ["valid_count", "invalid_count", "results"],
        "properties": {
            "valid_count": COUNT,
            "invalid_count": COUNT,
            "results": {
                "type": "array",
                "items": {
                    "allOf": [{"anyOf": [RESULT, OUTPUT]}],
                    "required": ["index"],
                    "properties": {"index": COUNT},
                },
            },
        },
    }
    return {
        "/api/v1/validate": {
            "post": operation(
                "validate",
                "Validate one instance, or up to the plan's `max_sync_instances`",
                {
                    200: success(
                        "`{valid, errors}` for `instance`; counts and one result per item for `instances`. "
                        "With `output`, the specification's structure in place of `{valid, errors}`.",
                        {"anyOf": [RESULT, many, OUTPUT]},
                    )
                },
                tag="validation",
                errors=(400, 404, 413, 422),
                parameters=[
                    query(
                        "output",
                        {"enum": ["list", "flag", "basic", "detailed"]},
                        "`list` (default): Tollgate's errors. `flag`, `basic`, `detailed`: the JSON Schema "
                        "specification's output formats (2020-12 core, 12.4), with absolute keyword locations.",
                    )
                ],
                description=(
                    "Cost: one request and one quota unit per instance, charged before validating. "
                    "Numbers are compared as written: integers of any size, and decimals a double does not hold "
                    "(`1.0000000000000000001`, `1e-400`, `1e400`) exactly; answers write them back digit for digit. "
                    "The validation takes at most `VALIDATION_SYNC_TIME_LIMIT` seconds (422 `validation_timeout`); "
                    "messages are cut to 256 characters and the answer's errors to 1 MiB (`errors_truncated`)."
                ),
                request_body={
                    "required": True,
                    "content": with_example(
                        json_content(body), {"schema": "orders/1", "instances": [{"id": 1}, {"id": "x"}]}
                    ),
                },
            ),
        },
    }


def _job_paths() -> Json:
    upload = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "NDJSON, a JSON array or CSV."},
                    "schema": {"type": "string", "description": "`name/version`, unless `?schema=` names it."},
                },
            }
        },
        "application/x-ndjson": {**RAW, "example": EXAMPLE_RECORDS},
        "application/json": RAW,
        "text/csv": RAW,
        # What generated clients send a file as: `?format=` says which.
        "application/octet-stream": RAW,
    }
    return {
        "/api/v1/jobs": {
            "get": operation(
                "listJobs",
                "The account's jobs, newest first",
                {200: success("A page of jobs.", page_of(JOB_SUMMARY))},
                tag="jobs",
                errors=(400,),
                parameters=[
                    *PAGING,
                    query(
                        "status",
                        {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
                        "Only jobs in this status.",
                    ),
                ],
            ),
            "post": operation(
                "createJob",
                "Upload a file to validate in the background",
                {202: success("Accepted and queued.", JOB_ACCEPTED, headers=LOCATION)},
                tag="jobs",
                errors=(400, 404, 411, 413, 415),
                description=(
                    "The upload is streamed to storage and counted; one quota unit per record is reserved "
                    "for that count (a failure on our side refunds it). Over the plan's `max_upload_bytes`: "
                    "413 without reading the body."
                ),
                parameters=[
                    query("schema", {"type": "string"}, "`name/version` of a registered schema.", "orders/1"),
                    query("format", {"enum": ["ndjson", "json", "csv"]}, "Overrides the content type."),
                    query(
                        "output",
                        {"enum": ["list", "flag", "basic", "detailed"]},
                        "How each invalid record is reported: `list` (default) its errors; `flag`, `basic`, "
                        "`detailed` its one output structure of the specification (as `/validate?output=`).",
                    ),
                ],
                request_body={"required": True, "content": upload},
            ),
        },
        "/api/v1/jobs/{job_id}": {
            "get": operation(
                "getJob",
                "A job: status, progress, counts and links",
                {200: success("The job.", JOB_FULL)},
                tag="jobs",
                errors=(400, 404),
                description="Small whatever the job's errors: `?include=errors` adds the first 100 of them.",
                parameters=[
                    JOB_ID,
                    query("include", {"enum": ["errors"]}, "`errors`: add the job's first 100 errors."),
                ],
            ),
            "delete": operation(
                "cancelJob",
                "Cancel a queued or running job",
                {200: success("The cancelled job.", JOB_FULL)},
                tag="jobs",
                errors=(404, 409),
                description="Refunds the units of the records not processed yet; 409 `job_finished` once finished.",
                parameters=[JOB_ID],
            ),
        },
        "/api/v1/jobs/{job_id}/errors": {
            "get": operation(
                "getJobErrors",
                "The error report: one NDJSON line per invalid record",
                {
                    200: success(
                        '`{"record": N, "record_kind": "line"|"index"|"row", "errors": [...]}` per line: N is the '
                        "1-based line (NDJSON), the 0-based array index (JSON) or the 1-based data row (CSV).",
                        # The same lines as text/plain for `Accept: text/plain`:
                        # what client generators read as a string.
                        content={
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    )
                },
                tag="jobs",
                errors=(404, 409, 410),
                description=(
                    "Streamed from storage as it is read. A cancelled job's report covers the records it "
                    "processed before it stopped; 409 `report_unavailable` before the job has succeeded or "
                    "was cancelled, 410 `report_expired` after the retention period."
                ),
                parameters=[JOB_ID],
            ),
        },
    }


def paths() -> Json:
    return _schema_paths() | _validate_paths() | _job_paths()
