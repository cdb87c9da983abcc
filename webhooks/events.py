"""Finished jobs become webhook events (``validation.signals.job_finished``)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from validation.signals import job_finished
from webhooks.services import job_event_emit


@receiver(job_finished, dispatch_uid="webhooks.job_finished")
def _job_finished(sender: Any, *, job_id: Any, status: str, **kwargs: Any) -> None:
    job_event_emit(job_id=job_id, status=status)
