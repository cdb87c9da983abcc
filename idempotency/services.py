"""Claiming an Idempotency-Key, keeping its first answer, replaying it.

Contract (Stripe's):

- :func:`key_claim` either claims the key for this request (the caller runs
  the request, then :func:`key_store` keeps the answer or
  :func:`key_release` forgets the claim), or returns the stored answer of
  the same request, or raises IdempotencyKeyReused (422: another request
  used the key) or IdempotencyInProgress (409: the first is still running).
- Exactly one of any number of simultaneous claims of a key wins: the row's
  unique constraint decides, in the database.
- A claim whose request can no longer be running (older than
  ``IDEMPOTENCY_LOCK_SECONDS``, longer than a request may last) is taken over.
- An answer is kept ``IDEMPOTENCY_KEY_HOURS`` (24) after the key was first
  used; :func:`keys_expire` (the worker's sweep) deletes older rows.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone

from idempotency.exceptions import IdempotencyInProgress, IdempotencyKeyReused
from idempotency.models import IdempotencyKey
from project.database import outage
from project.request_id import current_request_id

log = logging.getLogger("tollgate.idempotency")

DEFAULT_KEY_HOURS = 24.0
# gunicorn kills a request after 28 s (gunicorn.conf.py; some deployments
# raise it for slow uploads): a claim older than this belongs to a request
# that died with its worker. Keep it above any gunicorn timeout in use.
DEFAULT_LOCK_SECONDS = 300.0
REPLAYED_HEADER = "Idempotent-Replayed"
# The X-Request-ID of the request whose answer a replay repeats (the replay
# has its own X-Request-ID).
ORIGINAL_REQUEST_HEADER = "Original-Request-ID"
# Headers of the first answer that describe that moment, not the answer: the
# replay gets its own.
_NOT_KEPT = frozenset(
    {
        "ratelimit",
        "ratelimit-policy",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
        "x-request-id",
        "original-request-id",
        "content-length",
        "date",
        "server",
        "set-cookie",
        "vary",
    }
)


def fingerprint(*, method: str, path: str, query: str, content_type: str, body_digest: bytes) -> str:
    """What makes two requests "the same request"."""
    digest = hashlib.sha256()
    for part in (method, path, query, content_type):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(body_digest)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns the key (``row_id``) until it stores or releases it."""

    row_id: int
    claimed_at: Any


def _hours() -> float:
    return float(getattr(settings, "IDEMPOTENCY_KEY_HOURS", DEFAULT_KEY_HOURS))


def _lock_seconds() -> float:
    return float(getattr(settings, "IDEMPOTENCY_LOCK_SECONDS", DEFAULT_LOCK_SECONDS))


def key_claim(*, account_id: int, key: str, fingerprint: str, method: str, path: str) -> Claim | IdempotencyKey:
    """Claim ``key`` for a request, or return the finished row whose answer is
    replayed. Raises IdempotencyKeyReused, IdempotencyInProgress."""
    for _ in range(3):
        now = timezone.now()
        try:
            with transaction.atomic():
                row = IdempotencyKey.objects.create(
                    account_id=account_id,
                    key=key,
                    fingerprint=fingerprint,
                    method=method,
                    path=path[:255],
                    created_at=now,
                    expires_at=now + timedelta(hours=_hours()),
                )
            return Claim(row.pk, row.created_at)
        except IntegrityError:
            pass
        existing = IdempotencyKey.objects.filter(account_id=account_id, key=key).first()
        if existing is None:
            continue  # expired and deleted meanwhile: claim again
        if existing.expires_at <= now:
            IdempotencyKey.objects.filter(pk=existing.pk, expires_at=existing.expires_at).delete()
            continue
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReused(details={"method": existing.method, "path": existing.path})
        if existing.done:
            return existing
        if existing.created_at > now - timedelta(seconds=_lock_seconds()):
            raise IdempotencyInProgress()
        # The first request died with its worker: take the claim over (one
        # of several retries doing so wins).
        taken = IdempotencyKey.objects.filter(pk=existing.pk, created_at=existing.created_at, response_status=None)
        if taken.update(created_at=now):
            log.warning("Idempotency key of account %s taken over from a request that never finished", account_id)
            return Claim(existing.pk, now)
        raise IdempotencyInProgress()
    raise IdempotencyInProgress()


def storable(response: HttpResponse) -> bool:
    """Whether ``response`` is the answer to keep: not a 429 or a server-side
    failure (a retry must get a real try), and not streamed."""
    return response.status_code < 500 and response.status_code != 429 and not response.streaming


def key_store(*, claim: Claim, response: HttpResponse) -> None:
    headers = [[name, value] for name, value in response.items() if name.lower() not in _NOT_KEPT]
    if (request_id := current_request_id()) is not None:
        headers.append([ORIGINAL_REQUEST_HEADER, request_id])
    IdempotencyKey.objects.filter(pk=claim.row_id, created_at=claim.claimed_at).update(
        response_status=response.status_code, response_headers=headers, response_body=response.content
    )


def key_release(*, claim: Claim) -> None:
    """Forget the claim: the next request with the key runs afresh."""
    IdempotencyKey.objects.filter(pk=claim.row_id, created_at=claim.claimed_at, response_status=None).delete()


def replay(row: IdempotencyKey) -> HttpResponse:
    """The stored answer, byte for byte, marked ``Idempotent-Replayed: true``."""
    response = HttpResponse(bytes(row.response_body), status=row.response_status)
    for name, value in row.response_headers:
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def keys_expire(*, batch: int = 1000) -> int:
    """Delete expired keys, ``batch`` at a time; returns how many."""
    total = 0
    while True:
        ids = list(IdempotencyKey.objects.filter(expires_at__lte=timezone.now()).values_list("pk", flat=True)[:batch])
        if not ids:
            return total
        total += IdempotencyKey.objects.filter(pk__in=ids).delete()[0]


def keys_expire_safely() -> int:
    """:func:`keys_expire` for the worker's sweep: a database error is logged
    once per outage (``project.database``; the next sweep tries again), never
    raised."""
    try:
        return keys_expire()
    except DatabaseError as exc:
        outage.failed(exc)
        return 0
