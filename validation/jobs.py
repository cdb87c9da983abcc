"""Batch job services: create, cancel, fail, refund, and the RQ entry point.

Quota: a job's units are reserved once, at upload, for the records counted
then (``units_reserved``). Running a job never charges, however often it
runs. Units come back in two cases, each at most once (``refunded_at`` is
claimed before Redis is asked, in the same write that finishes the job, so
that no reader sees a finished job whose refund is still to come; it is
released again if Redis did not answer, so that recovery retries it):

- the job failed for a server-side reason: every reserved unit;
- the job was cancelled: the units of the records not processed yet.

Refunds go to the quota windows of the reservation that are still current
(the refund contract of ``quotas.contract.Backend``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from project.storage import discard
from quotas.backends import get_backend
from validation.bounds import clip, storable
from validation.exceptions import JobFinished, JobNotFound
from validation.models import ACTIVE_STATUSES, JobStatus, Schema, ValidationJob
from validation.queue import get_queue_service
from validation.signals import job_finished
from validation.uploads import Upload

log = logging.getLogger("tollgate.validation")


def run_validation_job(job_id: str) -> str:
    """The RQ job: load the row by id and run it (``validation.runner``)."""
    from validation.runner import job_run

    return job_run(job_id=job_id)


def job_enqueue(*, job: ValidationJob) -> bool:
    """Hand ``job`` to the queue (after the current transaction commits).
    False if Redis did not take it: the row stays queued and recovery hands
    it over again, so the caller need not fail."""
    try:
        get_queue_service().enqueue(run_validation_job, str(job.pk), job_id=job.rq_id)
    except (RedisError, OSError) as exc:
        log.warning("Could not enqueue job %s (%s); recovery will retry", job.pk, type(exc).__name__)
        return False
    return True


def job_create(
    *,
    account_id: int,
    schema: Schema,
    upload: Upload,
    units_reserved: int,
    reserved_at: float,
    output: str = "list",
) -> ValidationJob:
    """Commit the job row for a stored, counted and reserved upload, then
    enqueue it. The row is the truth from here on: if the enqueue fails, the
    job still runs (recovery)."""
    with transaction.atomic():
        job = ValidationJob.objects.create(
            account_id=account_id,
            schema=schema,
            format=upload.format,
            upload=upload.name,
            upload_bytes=upload.size,
            total=upload.records,
            units_reserved=units_reserved,
            reserved_at=reserved_at,
            enqueued_at=timezone.now(),
            output=output,
        )
    job_enqueue(job=job)
    return job


def job_get(*, account_id: int, job_id: Any) -> ValidationJob:
    """The account's job. Raises JobNotFound (another account's job too)."""
    try:
        job_id = uuid.UUID(str(job_id))
    except ValueError:
        raise JobNotFound() from None
    job = ValidationJob.objects.select_related("schema").filter(account_id=account_id, pk=job_id).first()
    if job is None:
        raise JobNotFound()
    return job


def job_cancel(*, account_id: int, job_id: Any) -> ValidationJob:
    """Cancel a queued or running job (idempotent for a cancelled one). A
    running worker notices within about a second and stops. Refunds the
    records not processed yet. Raises JobNotFound, JobFinished (409)."""
    job = job_get(account_id=account_id, job_id=job_id)
    with transaction.atomic():
        job = ValidationJob.objects.select_for_update().select_related("schema").get(pk=job.pk)
        if job.status == JobStatus.CANCELLED:
            return job
        if job.is_finished:
            raise JobFinished(details={"status": job.status})
        was_queued = job.status == JobStatus.QUEUED
        job.status = JobStatus.CANCELLED
        job.finished_at = timezone.now()
        job.refund_units = max(0, job.units_reserved - job.processed) if job.units_reserved else 0
        job.refunded_at = job.finished_at if job.refund_units else None
        job.save(update_fields=["status", "finished_at", "refund_units", "refunded_at"])
    if job.refunded_at:
        refund_claimed(job, job.refund_units, job.refunded_at)
    if was_queued:
        upload_discard(job_id=job.pk)
    job_finished_send(job_id=job.pk, status=JobStatus.CANCELLED)
    job.refresh_from_db()
    return job


def job_fail(*, job_id: Any, code: str, message: str, attempt: int | None = None) -> bool:
    """Mark an active job failed for a server-side reason and refund all of
    its reserved units. ``attempt`` given: only if that run still owns the
    row. Returns whether this call failed it."""
    rows = ValidationJob.objects.filter(pk=job_id, status__in=ACTIVE_STATUSES)
    if attempt is not None:
        rows = rows.filter(status=JobStatus.RUNNING, attempts=attempt)
    job = rows.only("account_id", "units_reserved", "reserved_at").first()
    if job is None:
        return False
    finished_at = timezone.now()
    updated = rows.update(
        status=JobStatus.FAILED,
        error={"code": code, "message": storable(clip(message, 1024))},
        finished_at=finished_at,
        refund_units=job.units_reserved,
        **refund_claim(job.units_reserved, finished_at),
    )
    if updated:
        if job.units_reserved:
            refund_claimed(job, job.units_reserved, finished_at)
        job_finished_send(job_id=job_id, status=JobStatus.FAILED)
    return bool(updated)


def job_finished_send(*, job_id: Any, status: str) -> None:
    """Tell ``job_finished`` receivers (webhooks) that the job finished; a
    receiver's error is logged, never raised: the job's outcome stands."""
    for _receiver, result in job_finished.send_robust(ValidationJob, job_id=job_id, status=status):
        if isinstance(result, Exception):
            log.error("A job_finished receiver failed for job %s", job_id, exc_info=result)


def refund_claim(units: int, at: Any) -> dict[str, Any]:
    """The field that claims a refund of ``units`` in the write that
    finishes a job (nothing when there is nothing to give back); then
    ``refund_claimed`` gives it."""
    return {"refunded_at": at} if units else {}


def job_refund(*, job_id: Any) -> bool:
    """Give back the job's ``refund_units``, once. False if there is nothing
    to give back, it was given already, or Redis did not answer (then it is
    left for recovery to retry)."""
    claimed_at = timezone.now()
    pending = ValidationJob.objects.filter(pk=job_id, refunded_at__isnull=True, refund_units__gt=0)
    job = pending.only("account_id", "refund_units", "reserved_at").first()
    if job is None or not pending.update(refunded_at=claimed_at):
        return False
    return refund_claimed(job, job.refund_units, claimed_at)


def refund_claimed(job: ValidationJob, units: int, claimed_at: Any) -> bool:
    """Give back ``units`` of ``job`` (its ``account_id`` and ``reserved_at``
    loaded), whose refund was claimed at ``claimed_at``. Nothing is read
    first: the claim stands only if Redis was asked. If Redis did not
    answer, the claim is released for recovery to retry; False."""
    try:
        get_backend().refund(job.account_id, units, at=job.reserved_at)
    except (RedisError, OSError) as exc:
        ValidationJob.objects.filter(pk=job.pk, refunded_at=claimed_at).update(refunded_at=None)
        log.warning("Refund of %s units for job %s failed (%s); will retry", units, job.pk, exc)
        return False
    log.info("Refunded %s units to account %s for job %s", units, job.account_id, job.pk)
    return True


def upload_discard(*, job_id: Any) -> None:
    """Delete a finished job's upload from storage (it is never read again).
    If storage does not answer, the name stays on the row and the retention
    sweep deletes the file later."""
    job = ValidationJob.objects.filter(pk=job_id).exclude(upload="").only("upload", "status").first()
    if job is None or not job.is_finished:
        return
    if discard(job.upload):
        ValidationJob.objects.filter(pk=job_id, upload=job.upload).update(upload="")


def job_files_delete(*, job_id: Any) -> bool:
    """Delete a finished job's files (upload and report) and record when;
    the row and its summary stay. False if storage did not delete them (the
    next sweep tries again)."""
    job = ValidationJob.objects.filter(pk=job_id, files_deleted_at__isnull=True).only("upload", "report").first()
    if job is None or not all([discard(job.upload), discard(job.report)]):
        return False
    ValidationJob.objects.filter(pk=job_id).update(upload="", report="", files_deleted_at=timezone.now())
    return True
