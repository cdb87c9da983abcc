"""The validation API: schemas, synchronous validation, batch jobs.

Metering: validation costs one quota unit per instance or record, charged
in the view once the count is known (``charged_in_view``); reading and
registering schemas and reading, listing and cancelling jobs cost one
request against the rate limits and no units.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse

from project import exactjson
from project.api import api_view, json_response
from project.errors import InvalidJson
from project.storage import STORAGE_ERRORS, describe
from quotas.decorators import charged_in_view, metered
from validation import representations as show
from validation.bundler import schema_bundle
from validation.depth import max_depth
from validation.exceptions import (
    InvalidRequest,
    PayloadTooLarge,
    ReportExpired,
    ReportUnavailable,
    StorageUnavailable,
    TooDeep,
)
from validation.jobs import job_cancel, job_get
from validation.models import JobStatus, Schema, ValidationJob
from validation.schemas import schema_get, schema_register, schemas_register, valid_name
from validation.services import output_format, payload_parse, payload_validate
from validation.submit import job_submit

log = logging.getLogger("tollgate.validation")
DEFAULT_SYNC_BODY_CEILING = 64 * 1024 * 1024


def sync_body_limit(request: HttpRequest) -> int:
    """The largest JSON body this request may send: its plan's
    ``max_sync_body_bytes``, at most ``VALIDATION_SYNC_BODY_CEILING_BYTES``."""
    ceiling = int(getattr(settings, "VALIDATION_SYNC_BODY_CEILING_BYTES", DEFAULT_SYNC_BODY_CEILING))
    return min(int(request.meter.record.max_sync_body_bytes), ceiling)  # type: ignore[attr-defined]


def _json(request: HttpRequest) -> Any:
    """The body as JSON (integers exact), read up to the plan's limit: 413
    ``payload_too_large`` past it (before reading when Content-Length says so)."""
    limit = sync_body_limit(request)
    too_large = PayloadTooLarge(
        f"The body is larger than this plan's {limit} bytes; send large data as a batch job.",
        details={"max_bytes": limit},
    )
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise too_large
    body = request.read(limit + 1)
    if len(body) > limit:
        raise too_large
    try:
        return exactjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" not in str(exc):
            raise InvalidJson(details={"reason": str(exc)}) from None
        # orjson stops by itself past 1024 levels: deeper than any limit.
        raise TooDeep("The body nests deeper than 1024 levels.", details={"max_depth": max_depth()}) from None


def _account(request: HttpRequest) -> int:
    return request.meter.record.account_id  # type: ignore[attr-defined]


@api_view("GET", "POST")
@metered(requests=1, units=0)
def schemas(request: HttpRequest) -> HttpResponse:
    account_id = _account(request)
    if request.method == "GET":
        rows = Schema.objects.filter(account_id=account_id).order_by("name", "-created_at", "-id")
        if name := show.query_value(request, "name"):
            # A name no schema can have matches none (and never reaches the query).
            rows = rows.filter(name=name) if valid_name(name) else rows.none()
        return json_response(show.paginate(request, rows, show.schema_summary))
    body = _json(request)
    if not isinstance(body, dict) or "schema" not in body:
        raise InvalidRequest('Send {"name", "version", "schema"}.')
    schema = schema_register(
        account_id=account_id, name=body.get("name"), version=body.get("version"), document=body["schema"]
    )
    location = request.build_absolute_uri(f"/api/v1/schemas/{schema.name}/{schema.version}")
    return json_response(show.schema_full(schema), status=201, headers={"Location": location})


@api_view("POST")
@metered(requests=1, units=0)
def schemas_bundle(request: HttpRequest) -> HttpResponse:
    """Register ``{"schemas": [{"name", "version", "schema"}, ...]}`` at once:
    any order, cycles allowed, all or nothing."""
    body = _json(request)
    entries = body.get("schemas") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) and "schema" in entry for entry in entries):
        raise InvalidRequest('Send {"schemas": [{"name", "version", "schema"}, ...]}.', details={"field": "schemas"})
    rows = schemas_register(
        account_id=_account(request),
        entries=[(entry.get("name"), entry.get("version"), entry["schema"]) for entry in entries],
    )
    return json_response({"results": [show.schema_full(row) for row in rows]}, status=201)


@api_view("GET")
@metered(requests=1, units=0)
def schema_detail(request: HttpRequest, name: str, version: str) -> HttpResponse:
    """The schema as registered, or with ``?bundle=true`` its dependencies
    embedded (``validation.bundler``)."""
    schema = schema_get(account_id=_account(request), name=name, version=version)
    bundle = show.query_value(request, "bundle")
    if bundle not in ("", "true", "false"):
        raise InvalidRequest("'bundle' must be true or false.", details={"field": "bundle"})
    if bundle == "true":
        return json_response({**show.schema_summary(schema), "schema": schema_bundle(schema=schema)})
    return json_response(show.schema_full(schema))


@api_view("POST")
@charged_in_view
def validate(request: HttpRequest) -> HttpResponse:
    """Each instance costs one unit, charged (in one round trip, all or
    nothing) after the request is understood and before anything is validated."""
    meter = request.meter  # type: ignore[attr-defined]
    output = output_format(show.query_value(request, "output"))
    payload = payload_parse(
        account_id=meter.record.account_id, body=_json(request), max_instances=meter.record.max_sync_instances
    )
    meter.charge(requests=1, units=len(payload.instances))
    return json_response(payload_validate(payload=payload, output=output))


@api_view("GET", "POST")
@charged_in_view
def jobs(request: HttpRequest) -> HttpResponse:
    """POST uploads a job (one request, then one unit per record); GET lists
    the account's jobs, newest first (one request)."""
    if request.method == "POST":
        output = output_format(show.query_value(request, "output"))
        job = job_submit(
            output=output,
            request=request,
            meter=request.meter,  # type: ignore[attr-defined]
            schema_reference=show.query_value(request, "schema"),
            explicit_format=show.query_value(request, "format"),
        )
        url = show.job_url(request, job)
        body = {"id": str(job.pk), "status": job.status, "url": url, "records": job.total}
        return json_response(body, status=202, headers={"Location": url})
    request.meter.charge(requests=1, units=0)  # type: ignore[attr-defined]
    rows = ValidationJob.objects.filter(account_id=_account(request)).select_related("schema")
    if status := show.query_value(request, "status"):
        if status not in JobStatus.values:
            raise InvalidRequest(f"'status' must be one of {', '.join(JobStatus.values)}.", details={"field": "status"})
        rows = rows.filter(status=status)
    return json_response(show.paginate(request, rows, lambda job: show.job_summary(request, job)))


@api_view("GET", "DELETE")
@metered(requests=1, units=0)
def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    if request.method == "DELETE":
        job = job_cancel(account_id=_account(request), job_id=job_id)
    else:
        job = job_get(account_id=_account(request), job_id=job_id)
    return json_response(show.job_full(request, job))


@api_view("GET")
@metered(requests=1, units=0)
def job_errors(request: HttpRequest, job_id: str) -> HttpResponse:
    """The error report, NDJSON, streamed from storage as it is read (never
    whole in memory): one line per invalid record, ``{"record": N,
    "errors": [...]}``. 410 ``report_expired`` once the retention period
    deleted it; 503 ``storage_unavailable`` if storage does not answer."""
    job = job_get(account_id=_account(request), job_id=job_id)
    if job.status != "succeeded":
        raise ReportUnavailable(f"The job is {job.status}; its report exists once it has succeeded.")
    if job.files_deleted_at is not None:
        raise ReportExpired(details={"deleted_at": job.files_deleted_at.isoformat()})
    if not job.report:
        return HttpResponse(b"", content_type="application/x-ndjson")
    try:
        report = default_storage.open(job.report, "rb")
    except STORAGE_ERRORS as exc:
        log.warning("Could not open the report of job %s (%s)", job.pk, describe(exc))
        raise StorageUnavailable("Storage did not answer; retry shortly.") from exc
    return FileResponse(report, content_type="application/x-ndjson")  # type: ignore[return-value]
