"""Validation jobs for the operations page, from the database (the truth,
readable while Redis is down): how many there are by status, the failed
jobs that can still be retried, and the operator's two actions, which go
through the validation app's services.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count, Min

from validation.failed_jobs import NotRetryable, failed_job_discard, failed_job_retry, retryable_failed_jobs
from validation.models import JobStatus, ValidationJob

# The page lists the most recent failures only.
MAX_SHOWN = 20
ACTIONS = ("retry", "discard")
RQ_QUEUE = "validation"

__all__ = ["ACTIONS", "FailedJob", "JobsReport", "NotRetryable", "act", "find_failed", "read_jobs"]


@dataclass(frozen=True, slots=True)
class FailedJob:
    id: str
    account: str
    schema: str
    records: int
    error_code: str
    error: str
    attempts: int
    finished_at: datetime | None
    rq_job_id: str  # django-rq's job page, while RQ still keeps the entry
    rq_queue_index: int


@dataclass(frozen=True, slots=True)
class JobsReport:
    counts: dict[str, int]  # every status, zeros included
    retryable_total: int
    failed: list[FailedJob]
    oldest_queued_at: datetime | None = None

    @property
    def waiting(self) -> int:
        """Jobs that need a worker: queued, or running (a running job whose
        worker died is run again by the next live one)."""
        return self.counts.get(JobStatus.QUEUED, 0) + self.counts.get(JobStatus.RUNNING, 0)


def _describe(job: ValidationJob) -> FailedJob:
    error: dict[str, Any] = job.error if isinstance(job.error, dict) else {}
    return FailedJob(
        id=str(job.pk),
        account=job.account.name,
        schema=f"{job.schema.name}/{job.schema.version}",
        records=job.total,
        error_code=str(error.get("code", "")),
        error=str(error.get("message", "")),
        attempts=job.attempts,
        finished_at=job.finished_at,
        rq_job_id=job.rq_id,
        rq_queue_index=list(settings.RQ_QUEUES).index(RQ_QUEUE),
    )


def read_jobs(limit: int = MAX_SHOWN) -> JobsReport:
    """Counts by status and the newest ``limit`` retryable failed jobs."""
    counts = dict.fromkeys(JobStatus.values, 0)
    for row in ValidationJob.objects.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    oldest = ValidationJob.objects.filter(status=JobStatus.QUEUED).aggregate(oldest=Min("created_at"))["oldest"]
    retryable = retryable_failed_jobs().select_related("account", "schema")
    return JobsReport(counts, retryable.count(), [_describe(job) for job in retryable[:limit]], oldest)


def find_failed(job_id: str) -> FailedJob | None:
    """The retryable failed job ``job_id``, or None."""
    try:
        job = retryable_failed_jobs().select_related("account", "schema").filter(pk=job_id).first()
    except ValidationError:  # not a UUID
        return None
    return _describe(job) if job is not None else None


def act(action: str, job_id: str) -> None:
    """Run ``action`` (retry or discard) on the failed job. Raises NotRetryable."""
    if action == "retry":
        failed_job_retry(job_id=job_id)
    else:
        failed_job_discard(job_id=job_id)
