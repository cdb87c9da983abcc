"""Recovery: no accepted job is ever lost.

The ``ValidationJob`` row is the truth; an RQ entry is only a delivery. A
sweep (:func:`jobs_recover`) compares the two and hands over again every job
whose delivery is gone:

- ``running`` rows whose heartbeat is older than ``VALIDATION_STALE_SECONDS``
  (default 60): their worker died (SIGKILL, OOM, a lost host). The row goes
  back to ``queued`` and is enqueued again, unless it has already been
  claimed ``VALIDATION_MAX_ATTEMPTS`` times (default 3): a job that kills
  every worker that runs it is failed (``worker_lost``) and refunded instead
  of killing workers forever.
- ``queued`` rows enqueued more than ``VALIDATION_ENQUEUE_GRACE`` seconds
  ago (default 5: the gap between commit and enqueue) whose RQ entry is gone,
  has ended, or sits in no queue (Redis flushed or restarted, enqueue failed).
- Refunds that Redis did not take are retried; uploads of cancelled jobs
  whose run died are deleted.
- The files (upload, error report) of jobs that finished more than
  ``VALIDATION_RETENTION_DAYS`` ago (default 7) are deleted; the rows stay
  (``files_deleted_at``), and the report answers 410 ``report_expired``.

Every hand-over is a conditional UPDATE on what the sweep saw, so concurrent
sweeps (several workers) hand a job over once; and a job that is delivered
twice still runs once (``runner`` claims the row).

The sweep runs in every worker (``validation.worker``) every
``VALIDATION_RECOVERY_INTERVAL`` seconds (default 10) and when it starts, so
a killed job is running again within about stale + interval seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from project.database import outage
from project.storage import STORAGE_ERRORS
from validation.jobs import job_enqueue, job_fail, job_files_delete, job_refund, upload_discard
from validation.models import JobStatus, ValidationJob
from validation.queue import get_queue_service

log = logging.getLogger("tollgate.validation.recovery")

DEFAULT_STALE_SECONDS = 60.0
DEFAULT_ENQUEUE_GRACE = 5.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETENTION_DAYS = 7.0
# Faults after which a sweep is simply tried again at the next interval.
_NEXT_TIME: tuple[type[BaseException], ...] = (RedisError, *STORAGE_ERRORS)
# Rows examined per kind per sweep: bounded work however large the backlog.
BATCH = 5000


@dataclass
class Recovered:
    """What one sweep did, by job id."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.refunded or self.expired)


def _seconds(name: str, default: float) -> timedelta:
    return timedelta(seconds=float(getattr(settings, name, default)))


def _requeue(job: ValidationJob, *, seen: Mapping[str, object], reason: str, now: datetime) -> bool:
    handed = ValidationJob.objects.filter(pk=job.pk, **seen).update(
        status=JobStatus.QUEUED, enqueued_at=now, heartbeat_at=None, recoveries=F("recoveries") + 1
    )
    if handed:
        log.warning("Recovering job %s (%s): enqueued again", job.pk, reason)
        job_enqueue(job=job)
    return bool(handed)


def _stale_running(now: datetime, report: Recovered) -> None:
    max_attempts = int(getattr(settings, "VALIDATION_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))
    stale_before = now - _seconds("VALIDATION_STALE_SECONDS", DEFAULT_STALE_SECONDS)
    rows = ValidationJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
    for job in rows.only("pk", "attempts", "heartbeat_at")[:BATCH]:
        if job.attempts >= max_attempts:
            message = f"The job's worker died {job.attempts} times while running it; its quota was refunded."
            if job_fail(job_id=job.pk, attempt=job.attempts, code="worker_lost", message=message):
                log.error("Job %s failed: its worker died %s times", job.pk, job.attempts)
                report.failed.append(str(job.pk))
            continue
        seen = {"status": JobStatus.RUNNING, "attempts": job.attempts, "heartbeat_at": job.heartbeat_at}
        if _requeue(job, seen=seen, reason=f"no heartbeat since {job.heartbeat_at:%H:%M:%S}", now=now):
            report.requeued.append(str(job.pk))


def _undelivered(now: datetime, report: Recovered) -> None:
    grace_before = now - _seconds("VALIDATION_ENQUEUE_GRACE", DEFAULT_ENQUEUE_GRACE)
    rows = ValidationJob.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=grace_before)
    jobs = list(rows.order_by("enqueued_at").only("pk", "enqueued_at")[:BATCH])
    if not jobs:
        return
    lost = get_queue_service().lost([job.rq_id for job in jobs])
    for job in jobs:
        if job.rq_id not in lost:
            continue
        seen = {"status": JobStatus.QUEUED, "enqueued_at": job.enqueued_at}
        if _requeue(job, seen=seen, reason="its queue entry is gone", now=now):
            report.requeued.append(str(job.pk))


def _loose_ends(now: datetime, report: Recovered) -> None:
    unrefunded = ValidationJob.objects.filter(refund_units__gt=0, refunded_at__isnull=True).exclude(
        status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
    )
    for job_id in unrefunded.values_list("pk", flat=True)[:BATCH]:
        if job_refund(job_id=job_id):
            report.refunded.append(str(job_id))
    settled_before = now - _seconds("VALIDATION_STALE_SECONDS", DEFAULT_STALE_SECONDS)
    leftovers = ValidationJob.objects.filter(status=JobStatus.CANCELLED, finished_at__lt=settled_before)
    for job_id in leftovers.exclude(upload="").values_list("pk", flat=True)[:BATCH]:
        upload_discard(job_id=job_id)


def _expired_files(now: datetime, report: Recovered) -> None:
    retention = timedelta(days=float(getattr(settings, "VALIDATION_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)))
    expired = ValidationJob.objects.filter(files_deleted_at__isnull=True, finished_at__lt=now - retention)
    for job_id in expired.values_list("pk", flat=True)[:BATCH]:
        if job_files_delete(job_id=job_id):
            report.expired.append(str(job_id))


def jobs_recover(*, now: datetime | None = None) -> Recovered:
    """One sweep (see the module docstring). Raises RedisError when the
    queue cannot be read (the caller retries on its next sweep) and
    DatabaseError when the rows cannot."""
    now = now or timezone.now()
    report = Recovered()
    _stale_running(now, report)
    _undelivered(now, report)
    _loose_ends(now, report)
    _expired_files(now, report)
    return report


def jobs_recover_safely() -> Recovered | None:
    """:func:`jobs_recover`, logging instead of raising when Redis, storage
    or the database is unreachable (the database once per outage,
    ``project.database``): a worker must outlive an outage."""
    try:
        return jobs_recover()
    except DatabaseError as exc:
        outage.failed(exc)  # one line per outage, not one per sweep
        return None
    except _NEXT_TIME as exc:
        log.warning("Job recovery skipped this time: %s: %s", type(exc).__name__, exc)
        return None
