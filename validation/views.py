"""The validation API: schemas, synchronous validation, batch jobs.

Metering: validation costs one quota unit per instance or record, charged
in the view once the count is known (``charged_in_view``); reading and
registering schemas and reading, listing and cancelling jobs cost one
request against the rate limits and no units.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse
from redis.exceptions import RedisError

from project.api import api_view, json_body, json_response
from quotas.backends import get_backend
from quotas.decision import Decision
from quotas.decorators import charged_in_view, metered
from quotas.exceptions import LimitExceeded
from validation import representations as show
from validation.exceptions import InvalidRequest, InvalidUpload, PayloadTooLarge, ReportUnavailable
from validation.jobs import job_cancel, job_create, job_get
from validation.models import JobStatus, Schema, ValidationJob
from validation.schemas import schema_get, schema_lookup, schema_register, valid_name
from validation.services import payload_parse, payload_validate
from validation.uploads import upload_receive

log = logging.getLogger("tollgate.validation")


def _json(request: HttpRequest) -> Any:
    try:
        return json_body(request)
    except RequestDataTooBig:
        raise PayloadTooLarge("The body is too large for this endpoint; send large data as a batch job.") from None


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


@api_view("GET")
@metered(requests=1, units=0)
def schema_detail(request: HttpRequest, name: str, version: str) -> HttpResponse:
    return json_response(show.schema_full(schema_get(account_id=_account(request), name=name, version=version)))


@api_view("POST")
@charged_in_view
def validate(request: HttpRequest) -> HttpResponse:
    """Each instance costs one unit, charged (in one round trip, all or
    nothing) after the request is understood and before anything is validated."""
    meter = request.meter  # type: ignore[attr-defined]
    payload = payload_parse(
        account_id=meter.record.account_id, body=_json(request), max_instances=meter.record.max_sync_instances
    )
    meter.charge(requests=1, units=len(payload.instances))
    return json_response(payload_validate(payload=payload))


def _quota_left(decision: Decision | None) -> None:
    """429 quota_exceeded if a quota has no unit left: the upload would be
    refused anyway, so it is not read."""
    for state in decision.states if decision else ():
        if state.kind == "quota" and state.remaining <= 0:
            raise LimitExceeded.of(decision, state, state.reset)  # type: ignore[arg-type]


def _create_job(request: HttpRequest) -> HttpResponse:
    meter = request.meter  # type: ignore[attr-defined]
    account_id = meter.record.account_id
    _quota_left(meter.charge(requests=1, units=0))
    reference = show.query_value(request, "schema")
    schema = schema_lookup(account_id=account_id, reference=reference) if reference else None
    upload = upload_receive(
        request=request,
        account_id=account_id,
        max_bytes=meter.record.max_upload_bytes,
        explicit_format=show.query_value(request, "format"),
    )
    reservation = None
    try:
        if schema is None:
            if not upload.schema_field:
                raise InvalidRequest("Name the schema: ?schema=name/version or a multipart 'schema' field.")
            schema = schema_lookup(account_id=account_id, reference=upload.schema_field)
        if upload.records == 0:
            raise InvalidUpload("The upload holds no records.")
        reservation = meter.charge(requests=0, units=upload.records)
        reserved_at = reservation.at_ms / 1000 if reservation else time.time()
        job = job_create(
            account_id=account_id,
            schema=schema,
            upload=upload,
            units_reserved=upload.records if reservation else 0,
            reserved_at=reserved_at,
        )
    except BaseException:
        # Nothing accepted: nothing stored, nothing kept of the reservation.
        default_storage.delete(upload.name)
        if reservation is not None:
            _give_back(account_id, upload.records, reservation)
        raise
    url = show.job_url(request, job)
    body = {"id": str(job.pk), "status": job.status, "url": url, "records": job.total}
    return json_response(body, status=202, headers={"Location": url})


def _give_back(account_id: int, units: int, reservation: Decision) -> None:
    try:
        get_backend().refund(account_id, units, at=reservation.at_ms / 1000)
    except (RedisError, OSError):
        log.exception("Could not give back %s units reserved for a refused upload of account %s", units, account_id)


@api_view("GET", "POST")
@charged_in_view
def jobs(request: HttpRequest) -> HttpResponse:
    """POST uploads a job (one request, then one unit per record); GET lists
    the account's jobs, newest first (one request)."""
    if request.method == "POST":
        return _create_job(request)
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
    """The error report, NDJSON, streamed from storage: one line per invalid
    record, ``{"record": N, "errors": [...]}``."""
    job = job_get(account_id=_account(request), job_id=job_id)
    if job.status != "succeeded":
        raise ReportUnavailable(f"The job is {job.status}; its report exists once it has succeeded.")
    if not job.report:
        return HttpResponse(b"", content_type="application/x-ndjson")
    return FileResponse(default_storage.open(job.report, "rb"), content_type="application/x-ndjson")  # type: ignore[return-value]
