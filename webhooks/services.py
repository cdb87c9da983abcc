"""Webhook services: endpoints, events, deliveries and their retries.

Delivery contract:

- An event (``job.succeeded``, ``job.failed``, ``job.cancelled``) becomes one
  :class:`~webhooks.models.Delivery` row per active endpoint of the account
  that subscribed to it, committed with its payload and a unique
  ``event_id``; its id is handed to RQ (queue ``webhooks``) on commit.
- :func:`delivery_attempt` (the RQ job) sends it once (``webhooks.sender``).
  A 2xx ends it (``succeeded``); anything else schedules the next attempt
  ``WEBHOOK_RETRY_BASE_SECONDS`` x 2^(attempts - 1) later (at most 6 h),
  until ``WEBHOOK_RETRY_HOURS`` (72) after the event (then ``failed``).
- The worker's sweep (:func:`deliveries_hand_over`) hands every due row to
  RQ again. A row handed over is leased for ``HAND_OVER_LEASE`` seconds, so
  that a lost RQ entry (Redis flushed, worker killed) is handed over again
  once the lease ends: delivery is at least once, and a receiver drops
  duplicates by ``Tollgate-Event-Id``.
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from project.database import outage
from validation.models import ValidationJob
from validation.queue import get_queue_service
from webhooks.addresses import AddressRefused, url_check
from webhooks.exceptions import InvalidWebhook, WebhookLimitReached, WebhookNotFound, WebhookUrlRefused
from webhooks.models import EVENTS, Delivery, DeliveryStatus, Endpoint
from webhooks.sender import send
from webhooks.signing import secret_new

log = logging.getLogger("tollgate.webhooks")

QUEUE = "webhooks"
# Longer than an attempt can last (3 redirects x 5 s steps) and the wait in
# the queue: a row leased longer than this lost its RQ entry.
HAND_OVER_LEASE = 120
MAX_DELAY_SECONDS = 6 * 3600
STATUS_EVENTS = {"succeeded": "job.succeeded", "failed": "job.failed", "cancelled": "job.cancelled"}


def _time(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def job_payload(job: ValidationJob) -> dict[str, Any]:
    """What an event says about its job (the summary the API shows)."""
    return {
        "id": str(job.pk),
        "path": f"/api/v1/jobs/{job.pk}",
        "status": job.status,
        "schema": {"name": job.schema.name, "version": job.schema.version},
        "format": job.format,
        "progress": {"processed": job.processed, "total": job.total},
        "summary": {"valid": job.valid_count, "invalid": job.invalid_count},
        "error": job.error,
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
    }


def _enqueue(delivery_id: int, attempt: int) -> None:
    try:
        get_queue_service().enqueue(
            delivery_attempt_job, delivery_id, job_id=f"webhook-{delivery_id}-{attempt}", queue=QUEUE
        )
    except (RedisError, OSError) as exc:
        # The lease runs out and the sweep hands it over again.
        log.warning("Could not enqueue webhook delivery %s (%s)", delivery_id, type(exc).__name__)


def event_emit(*, account_id: int, event: str, data: dict[str, Any]) -> list[Delivery]:
    """One delivery of ``event`` per subscribed active endpoint of the
    account, handed to RQ once committed."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    endpoints = [
        endpoint
        for endpoint in Endpoint.objects.filter(account_id=account_id, active=True)
        if event in (endpoint.events or [])
    ]
    if not endpoints:
        return []
    now = timezone.now()
    deliveries = []
    with transaction.atomic():
        for endpoint in endpoints:
            delivery = Delivery(
                endpoint=endpoint,
                event=event,
                next_attempt_at=now + timedelta(seconds=HAND_OVER_LEASE),
                retry_until=_retry_until(now),
            )
            delivery.payload = orjson.dumps(
                {"id": str(delivery.event_id), "type": event, "created_at": _time(now), "data": data}
            ).decode()
            delivery.save()
            deliveries.append(delivery)
            transaction.on_commit(functools.partial(_enqueue, delivery.pk, 0))
    return deliveries


def job_event_emit(*, job_id: Any, status: str) -> list[Delivery]:
    event = STATUS_EVENTS.get(status)
    job = ValidationJob.objects.select_related("schema").filter(pk=job_id).first()
    if event is None or job is None:
        return []
    return event_emit(account_id=job.account_id, event=event, data={"job": job_payload(job)})


def retry_delay(attempts: int) -> float:
    """Seconds before the attempt after ``attempts`` failed ones."""
    base = float(getattr(settings, "WEBHOOK_RETRY_BASE_SECONDS", 30))
    return min(base * 2 ** max(0, attempts - 1), MAX_DELAY_SECONDS)


def delivery_attempt_job(delivery_id: int) -> str:
    """The RQ job: one attempt (:func:`delivery_attempt`)."""
    return delivery_attempt(delivery_id=delivery_id)


def delivery_attempt(*, delivery_id: int) -> str:
    """Send a pending delivery once and record the outcome. Returns
    ``succeeded``, ``retry``, ``failed`` (gave up) or ``skipped`` (not
    pending, or another run claimed this attempt).

    The attempt is counted, and the next one scheduled, before anything is
    sent: a worker killed mid-attempt leaves a delivery that the sweep
    retries at that time, and the retry window bounds it like any failure."""
    delivery = Delivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return "skipped"
    now = timezone.now()
    pending = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING)
    if delivery.retry_until is None or now >= delivery.retry_until:
        pending.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
        return "failed"
    attempts = delivery.attempts + 1
    due = now + timedelta(seconds=retry_delay(attempts))
    if not pending.filter(attempts=delivery.attempts).update(
        attempts=attempts, last_attempt_at=now, next_attempt_at=due
    ):
        return "skipped"
    endpoint = delivery.endpoint
    outcome = send(
        url=endpoint.url,
        secret=endpoint.secret,
        event=delivery.event,
        event_id=str(delivery.event_id),
        body=delivery.payload.encode(),
    )
    mine = pending.filter(attempts=attempts)
    fields: dict[str, Any] = {"response_status": outcome.status, "last_error": outcome.error[:500]}
    if outcome.delivered:
        mine.update(status=DeliveryStatus.SUCCEEDED, delivered_at=timezone.now(), next_attempt_at=None, **fields)
        log.info("Webhook %s %s delivered to endpoint %s", delivery.event, delivery.event_id, endpoint.pk)
        return "succeeded"
    if due > delivery.retry_until:
        mine.update(status=DeliveryStatus.FAILED, next_attempt_at=None, **fields)
        log.warning(
            "Webhook %s %s to endpoint %s: gave up after %s attempts",
            delivery.event,
            delivery.event_id,
            endpoint.pk,
            attempts,
        )
        return "failed"
    mine.update(**fields)
    log.info(
        "Webhook %s %s to endpoint %s failed (%s); attempt %s at %s",
        delivery.event,
        delivery.event_id,
        endpoint.pk,
        outcome.error or outcome.status,
        attempts + 1,
        due.isoformat(),
    )
    return "retry"


def deliveries_hand_over(*, limit: int = 200) -> int:
    """Hand every due pending delivery to RQ, leasing it; returns how many."""
    now = timezone.now()
    handed = 0
    due = Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    for pk, attempts, at in due.order_by("next_attempt_at").values_list("pk", "attempts", "next_attempt_at")[:limit]:
        leased = Delivery.objects.filter(pk=pk, status=DeliveryStatus.PENDING, next_attempt_at=at).update(
            next_attempt_at=now + timedelta(seconds=HAND_OVER_LEASE)
        )
        if leased:
            _enqueue(pk, attempts)
            handed += 1
    return handed


def deliveries_expire(*, batch: int = 1000) -> int:
    """Delete finished deliveries (succeeded or given up) older than
    ``WEBHOOK_DELIVERY_RETENTION_DAYS`` (30); returns how many."""
    days = float(getattr(settings, "WEBHOOK_DELIVERY_RETENTION_DAYS", 30))
    old = Delivery.objects.exclude(status=DeliveryStatus.PENDING).filter(
        created_at__lt=timezone.now() - timedelta(days=days)
    )
    total = 0
    while ids := list(old.values_list("pk", flat=True)[:batch]):
        total += Delivery.objects.filter(pk__in=ids).delete()[0]
    return total


def deliveries_hand_over_safely() -> int:
    """For the worker's sweep: hand over due deliveries
    (:func:`deliveries_hand_over`) and delete old finished ones
    (:func:`deliveries_expire`). Errors are logged, never raised (the next
    sweep tries again; the database's once per outage, ``project.database``).
    Returns how many were handed over."""
    try:
        handed = deliveries_hand_over()
        deliveries_expire()
    except DatabaseError as exc:
        outage.failed(exc)
        return 0
    except (RedisError, OSError) as exc:
        log.warning("Webhook deliveries not handed over this time: %s", type(exc).__name__)
        return 0
    return handed


def delivery_resend(*, delivery: Delivery) -> None:
    """An operator's resend: the same event (same ``event_id`` and body) is
    sent again now, with a fresh retry schedule, whatever its status."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING,
        next_attempt_at=now + timedelta(seconds=HAND_OVER_LEASE),
        retry_until=_retry_until(now),
    )
    transaction.on_commit(lambda: _enqueue(delivery.pk, delivery.attempts))


MAX_ENDPOINTS = 20
MAX_URL_LENGTH = 2000


def _retry_until(now: Any) -> Any:
    return now + timedelta(hours=float(getattr(settings, "WEBHOOK_RETRY_HOURS", 72)))


def endpoint_create(*, account_id: int, url: Any, events: Any) -> Endpoint:
    """A new endpoint with a new secret. Raises InvalidWebhook (400
    ``invalid_request``: fields), WebhookUrlRefused (400
    ``invalid_webhook_url``), WebhookLimitReached (409)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidWebhook(f"'url' must be a URL of at most {MAX_URL_LENGTH} characters.", details={"field": "url"})
    if (
        not isinstance(events, list)
        or not events
        or not all(isinstance(event, str) and event in EVENTS for event in events)
    ):
        raise InvalidWebhook(f"'events' must be a non-empty list of {', '.join(EVENTS)}.", details={"field": "events"})
    try:
        url_check(url)
    except AddressRefused as refused:
        raise WebhookUrlRefused(str(refused), details={"field": "url"}) from None
    if Endpoint.objects.filter(account_id=account_id).count() >= MAX_ENDPOINTS:
        raise WebhookLimitReached(
            f"An account has at most {MAX_ENDPOINTS} webhook endpoints; delete one first.",
            details={"max_endpoints": MAX_ENDPOINTS},
        )
    return Endpoint.objects.create(
        account_id=account_id, url=url, events=sorted(set(events), key=EVENTS.index), secret=secret_new()
    )


def endpoint_get(*, account_id: int, endpoint_id: Any) -> Endpoint:
    try:
        return Endpoint.objects.get(account_id=account_id, pk=uuid.UUID(str(endpoint_id)))
    except (ValueError, Endpoint.DoesNotExist):
        raise WebhookNotFound() from None


def endpoint_delete(*, account_id: int, endpoint_id: Any) -> None:
    """Delete the endpoint and its deliveries (pending ones are not sent)."""
    endpoint_get(account_id=account_id, endpoint_id=endpoint_id).delete()
