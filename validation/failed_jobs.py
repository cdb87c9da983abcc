"""Operator actions on failed batch jobs, for the admin's operations page.

Written for the operations page (issue 5) beside ``validation.jobs``, whose
services have no retry: the smallest pair of services the page needs.

A job that failed for a server-side reason keeps its upload (only success and
cancellation delete it), so it can run again. Both actions are conditional
updates on the row, so two operators (or an operator and recovery) cannot
act twice:

- :func:`failed_job_retry` puts the row back to ``queued`` (progress, results,
  error and attempts cleared: the retried job gets ``VALIDATION_MAX_ATTEMPTS``
  runs of its own) and enqueues it; ``validation.runner`` claims it as usual
  (runs from before the retry are fenced out by their start time).
  The quota refunded when it failed is not charged again (the failure was
  ours), and cannot be refunded twice (``refunded_at`` stays set).
- :func:`failed_job_discard` gives up: the upload is deleted, the row stays
  ``failed`` for the client, and it can no longer be retried.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from validation.jobs import job_enqueue, upload_discard
from validation.models import JobStatus, ValidationJob


class NotRetryable(Exception):
    """The job is not failed, or its upload is gone; ``str()`` says so."""


def retryable_failed_jobs() -> Any:
    """Failed jobs that still have their upload, newest failure first."""
    return ValidationJob.objects.filter(status=JobStatus.FAILED).exclude(upload="").order_by("-finished_at", "-pk")


def _retryable(job_id: Any) -> Any:
    rows = retryable_failed_jobs().filter(pk=job_id)
    try:
        exists = rows.exists()
    except (ValidationError, ValueError, TypeError):  # not a job id at all
        exists = False
    if not exists:
        raise NotRetryable("it is not a failed job with its upload (retried or discarded already?)")
    return rows


def failed_job_retry(*, job_id: Any) -> ValidationJob:
    """Run the failed job ``job_id`` again from its first record. Raises
    NotRetryable. If Redis does not take it now, the row stays queued and
    recovery hands it over."""
    updated = _retryable(job_id).update(
        status=JobStatus.QUEUED,
        error=None,
        processed=0,
        valid_count=0,
        invalid_count=0,
        first_errors=[],
        report="",
        report_truncated=False,
        attempts=0,
        started_at=None,
        heartbeat_at=None,
        finished_at=None,
        enqueued_at=timezone.now(),
    )
    if not updated:
        raise NotRetryable("it changed meanwhile (retried or discarded already?)")
    job = ValidationJob.objects.get(pk=job_id)
    # After the update has committed (no transaction here), so a Redis that
    # does not answer leaves a queued row for recovery rather than an error.
    job_enqueue(job=job)
    return job


def failed_job_discard(*, job_id: Any) -> None:
    """Give up on the failed job ``job_id``: delete its upload. Raises
    NotRetryable."""
    _retryable(job_id)
    upload_discard(job_id=job_id)
