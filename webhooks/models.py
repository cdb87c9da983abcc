"""Webhook endpoints of an account and the deliveries of each event.

A :class:`Delivery` row is the truth about one event for one endpoint; RQ
only carries its id to a worker, and the worker's sweep hands due rows over
again (a retry that is due, or an RQ entry that was lost): deliveries are at
least once. ``event_id`` is the same on every attempt (the receiver's key
for dropping duplicates).
"""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models

from quotas.models import Account
from webhooks.addresses import AddressRefused, url_check

EVENTS = ("job.succeeded", "job.failed", "job.cancelled")


class Endpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text=f"Any of {', '.join(EVENTS)}.")
    # The HMAC key of Tollgate-Signature, shown to the client once. It must
    # be kept in the clear: every delivery is signed with it.
    secret = models.CharField(max_length=100, editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "-created_at"], name="webhooks_endpoint_account")]

    def __str__(self) -> str:
        return self.url

    def clean(self) -> None:
        """What the API refuses, the admin refuses too (400 ``invalid_webhook_url``)."""
        try:
            url_check(self.url)
        except AddressRefused as refused:
            raise ValidationError({"url": str(refused)}) from None
        if not isinstance(self.events, list) or not self.events or not set(self.events) <= set(EVENTS):
            raise ValidationError({"events": f"A non-empty list of {', '.join(EVENTS)}."})


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # gave up after WEBHOOK_RETRY_HOURS


class Delivery(models.Model):
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    event = models.CharField(max_length=32)
    # The JSON body as sent, the same bytes on every attempt.
    payload = models.TextField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due; while one is in flight, when its hand-over
    # to RQ counts as lost.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # No attempt is scheduled after this (WEBHOOK_RETRY_HOURS after the
    # event, or after an operator's resend).
    retry_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="webhooks_delivery_endpoint"),
            models.Index(
                fields=["next_attempt_at"], condition=models.Q(status="pending"), name="webhooks_delivery_due"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.event_id} ({self.status})"

    @property
    def rq_id(self) -> str:
        return f"webhook-{self.pk}-{self.attempts}"
