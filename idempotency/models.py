"""The first answer to each ``Idempotency-Key`` of an account.

A row is claimed (``response_status`` null) before the view runs and holds
the answer once it is known; the unique constraint on (account, key) is what
lets exactly one of two simultaneous requests run. Rows live in the database,
not in Redis: the contract (a retry within 24 h gets the same answer, never a
second charge) must survive Redis losing its data, and the database is the
truth of everything a client paid for. The worker deletes expired rows.
"""

from __future__ import annotations

from django.db import models

from quotas.models import Account


class IdempotencyKey(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    # SHA-256 of method, path, query, content type and body: "the same request".
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    # Null while the first request runs.
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=list, blank=True)
    response_body = models.BinaryField(default=b"", blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="idempotency_key_unique")]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_key_expiry")]

    def __str__(self) -> str:
        return f"{self.key} ({self.method} {self.path})"

    @property
    def done(self) -> bool:
        return self.response_status is not None
