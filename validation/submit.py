"""Submitting a batch job: one service, all of it or none of it.

:func:`job_submit` peeks at the quota, stores the upload, reserves one unit
per record, and commits the job row (which enqueues it). Whatever fails on
the way, what was done is undone: the stored upload is deleted and reserved
units are given back, so a refused submission leaves nothing stored and
nothing charged but the one request against the rate limits.
"""

from __future__ import annotations

import logging
import time

from django.http import HttpRequest
from redis.exceptions import RedisError

from project.storage import discard
from quotas.backends import get_backend
from quotas.decision import Decision
from quotas.exceptions import LimitExceeded
from quotas.meter import RequestMeter
from validation.exceptions import InvalidRequest, InvalidUpload
from validation.jobs import job_create
from validation.models import Schema, ValidationJob
from validation.schemas import schema_lookup
from validation.uploads import Upload, upload_receive

log = logging.getLogger("tollgate.validation")


def _quota_left(decision: Decision | None) -> None:
    """429 quota_exceeded if a quota has no unit left: the upload would be
    refused anyway, so it is not read."""
    for state in decision.states if decision else ():
        if state.kind == "quota" and state.remaining <= 0:
            raise LimitExceeded.of(decision, state, state.reset)  # type: ignore[arg-type]


def _give_back(account_id: int, units: int, reservation: Decision) -> None:
    try:
        get_backend().refund(account_id, units, at=reservation.at_ms / 1000)
    except (RedisError, OSError):
        log.exception("Could not give back %s units reserved for a refused upload of account %s", units, account_id)


def _schema_field(account_id: int, upload: Upload) -> Schema:
    if not upload.schema_field:
        raise InvalidRequest("Name the schema: ?schema=name/version or a multipart 'schema' field.")
    return schema_lookup(account_id=account_id, reference=upload.schema_field)


def job_submit(
    *,
    request: HttpRequest,
    meter: RequestMeter,
    schema_reference: str | None,
    explicit_format: str,
    output: str = "list",
) -> ValidationJob:
    """Accept the upload in ``request`` as a job of ``meter``'s account.

    Charges one request, then one unit per record. Raises LimitExceeded
    (429, before the body is read if a quota is used up), SchemaNotFound
    (404, before the body is read when the schema is in the query),
    PayloadTooLarge (413), UnsupportedFormat (415), InvalidRequest and
    InvalidUpload (400), StorageUnavailable (503); on any of these, and on
    any other error, nothing stays stored or reserved. ``output`` is how
    invalid records are reported (``validation.services.output_format``).
    """
    account_id = meter.record.account_id
    _quota_left(meter.charge(requests=1, units=0))
    schema = schema_lookup(account_id=account_id, reference=schema_reference) if schema_reference else None
    upload = upload_receive(
        request=request,
        account_id=account_id,
        max_bytes=meter.record.max_upload_bytes,
        explicit_format=explicit_format,
    )
    reservation = None
    try:
        schema = schema or _schema_field(account_id, upload)
        if upload.records == 0:
            raise InvalidUpload("The upload holds no records.")
        reservation = meter.charge(requests=0, units=upload.records)
        return job_create(
            account_id=account_id,
            schema=schema,
            upload=upload,
            units_reserved=upload.records if reservation else 0,
            reserved_at=reservation.at_ms / 1000 if reservation else time.time(),
            output=output,
        )
    except BaseException:
        discard(upload.name)
        if reservation is not None:
            _give_back(account_id, upload.records, reservation)
        raise
