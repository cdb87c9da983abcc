"""Metering services: who is calling, and charging them.

``authenticate_key`` turns the raw key of a request into a :class:`KeyRecord`
from a per-process cache: no database or Redis work per request. The cache is
kept honest by the account's *generation*, which charge.lua checks on every
request: any change to a key, its account or the account's plan deletes the
generation in Redis (``quotas.signals``), the next charge on any process comes
back stale, and that process reloads the record before answering. A revoked
key is therefore refused on every worker from the next request on. Records are
also reloaded after ``RECORD_MAX_AGE`` seconds, which bounds staleness if a
change could not reach Redis.

``Meter.charge`` is the one way to consume: the middleware calls it for plain
endpoints; the validation views call it with the number of records.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from project.database import database_unavailable, outage
from quotas import keys
from quotas.exceptions import InvalidApiKey, LimiterUnavailable, LimitExceeded
from quotas.headers import decision_headers
from quotas.limiter import Decision, LimitState, StaleGeneration, Subject, get_backend
from quotas.models import ApiKey

log = logging.getLogger("tollgate.quotas")

# Upper bound on how long a record may be used without a reload, whatever the
# generation says (a change made while Redis was unreachable).
RECORD_MAX_AGE = 60.0
# An unknown prefix is remembered this long, so a flood of made-up keys costs
# one query per prefix and process, while a new key works within a second.
UNKNOWN_MAX_AGE = 1.0
# last_used_at is written at most this often per key and process.
TOUCH_INTERVAL = 60.0
# After Redis failed, requests skip it for this long instead of each waiting
# for the timeout: a hung Redis costs one slow request per process per second.
BREAKER_SECONDS = 1.0
CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a request needs to know about its key, account and plan."""

    key_id: int
    prefix: str
    label: str
    secret_hash: str
    account_id: int
    account_name: str
    plan_name: str
    usable: bool
    expires_at: float | None
    max_upload_bytes: int
    max_sync_instances: int
    subject: Subject
    loaded_at: float = field(compare=False)

    def valid_now(self) -> bool:
        return self.usable and (self.expires_at is None or self.expires_at > time.time())


class _Unknown:
    """Cache entry of a prefix with no key."""

    __slots__ = ("loaded_at",)

    def __init__(self) -> None:
        self.loaded_at = time.monotonic()


_records: dict[str, KeyRecord | _Unknown] = {}
_account_of: dict[str, int] = {}
_touched: dict[str, float] = {}
_breaker_open_until = 0.0
_last_open_warning = 0.0


def forget_records() -> None:
    """Empty this process's caches (tests, and after a bulk change)."""
    _records.clear()
    _account_of.clear()
    _touched.clear()


def _load(prefix: str, *, generation: str | None = None) -> KeyRecord | _Unknown:
    """Read the record from the database, with a generation read *before*
    the row, so that a change in between is caught as stale. ``generation``
    given skips Redis (fail-open loads)."""
    account_id = _account_of.get(prefix)
    if account_id is None:
        account_id = ApiKey.objects.filter(prefix=prefix).values_list("account_id", flat=True).first()
        if account_id is None:
            return _Unknown()
        _account_of[prefix] = account_id
    if generation is None:
        generation = get_backend().generation(account_id)
    key = ApiKey.objects.select_related("account__plan").filter(prefix=prefix).first()
    if key is None:
        _account_of.pop(prefix, None)
        return _Unknown()
    account, plan = key.account, key.account.plan
    return KeyRecord(
        key_id=key.pk,
        prefix=prefix,
        label=key.label,
        secret_hash=key.secret_hash,
        account_id=account.pk,
        account_name=account.name,
        plan_name=plan.name,
        usable=key.revoked_at is None and account.is_active,
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
        max_upload_bytes=plan.max_upload_bytes,
        max_sync_instances=plan.max_sync_instances,
        subject=Subject(account.pk, key.pk, generation, plan.rate_list, plan.quota_list),
        loaded_at=time.monotonic(),
    )


def _cached(prefix: str, *, reload: bool = False) -> KeyRecord | _Unknown:
    entry = _records.get(prefix)
    age = time.monotonic() - entry.loaded_at if entry is not None else 0.0
    max_age = UNKNOWN_MAX_AGE if isinstance(entry, _Unknown) else RECORD_MAX_AGE
    if reload or entry is None or age > max_age:
        entry = _load(prefix)
        if len(_records) >= CACHE_SIZE:
            _records.pop(next(iter(_records)))
        _records[prefix] = entry
    return entry


def authenticate_key(raw: str) -> KeyRecord:
    """The record of a usable key. Raises InvalidApiKey (malformed, bad
    checksum, unknown, wrong secret, revoked, expired, inactive account, all
    alike), ServiceUnavailable if the database or Redis cannot be read."""
    parsed = keys.parse(raw)
    if parsed is None:
        raise InvalidApiKey()
    try:
        try:
            record = _cached(parsed.prefix)
        except (RedisError, OSError) as exc:
            _open_breaker(exc)
            _unavailable()  # raises in fail mode closed
            # Fail mode open: authenticate from the database alone, uncached.
            record = _load(parsed.prefix, generation="")
    except DatabaseError as exc:
        raise database_unavailable(exc) from None
    if not isinstance(record, KeyRecord) or not keys.secret_matches(parsed.secret, record.secret_hash):
        raise InvalidApiKey()
    if not record.valid_now():
        raise InvalidApiKey()
    _touch(record)
    return record


def _touch(record: KeyRecord) -> None:
    now = time.monotonic()
    if now - _touched.get(record.prefix, -TOUCH_INTERVAL) < TOUCH_INTERVAL:
        return
    _touched[record.prefix] = now
    try:
        ApiKey.objects.filter(pk=record.key_id).update(last_used_at=timezone.now())
    except DatabaseError as exc:
        outage.failed(exc)  # logged once per outage; the request goes on


class Meter:
    """The metering of one request, attached to it as ``request.meter``."""

    __slots__ = ("charged", "decision", "record")

    def __init__(self, record: KeyRecord) -> None:
        self.record = record
        self.decision: Decision | None = None
        self.charged = False

    def charge(self, *, requests: int = 1, units: int = 1) -> Decision | None:
        """Charge ``requests`` against the key's rate limits and ``units``
        against the account's quotas, all or nothing, in one round trip.

        Returns the decision (None if Redis is unreachable and the fail mode is
        open). Raises LimitExceeded (429), InvalidApiKey (the key changed and is
        no longer usable), LimiterUnavailable (503, fail mode closed).
        """
        self.charged = True
        decision = _charge(self, requests, units)
        self.decision = decision
        if decision is not None and not decision.allowed:
            raise _rejection(decision)
        return decision


def _open_breaker(exc: BaseException) -> None:
    global _breaker_open_until
    _breaker_open_until = time.monotonic() + BREAKER_SECONDS
    log.warning("Redis unavailable for rate limiting: %s", type(exc).__name__)


def _charge(meter: Meter, requests: int, units: int) -> Decision | None:
    if time.monotonic() < _breaker_open_until:
        return _unavailable()
    backend = get_backend()
    try:
        for _ in range(3):
            try:
                return backend.charge(meter.record.subject, rate_cost=requests, quota_cost=units)
            except StaleGeneration:
                fresh = _cached(meter.record.prefix, reload=True)
                if not isinstance(fresh, KeyRecord) or not fresh.valid_now():
                    raise InvalidApiKey() from None
                meter.record = fresh
        raise RedisError("the account's generation kept changing")
    except (RedisError, OSError) as exc:
        _open_breaker(exc)
        return _unavailable()
    except DatabaseError as exc:
        raise database_unavailable(exc) from None


def _unavailable() -> Decision | None:
    """Apply RATELIMIT_FAIL_MODE: raise (closed) or let the request through."""
    global _last_open_warning
    if settings.RATELIMIT_FAIL_MODE != "open":
        raise LimiterUnavailable(retry_after=1)
    now = time.monotonic()
    if now - _last_open_warning > 10:
        _last_open_warning = now
        log.warning("RATELIMIT_FAIL_MODE=open: serving requests without rate limits while Redis is unavailable")
    return None


def _rejection(decision: Decision) -> LimitExceeded:
    return limit_exceeded(decision, decision.violated or decision.states[0], decision.retry_after)


def limit_exceeded(decision: Decision, state: LimitState, retry_after: int) -> LimitExceeded:
    """The 429 for ``state`` of ``decision``: ``rate_limited`` or
    ``quota_exceeded``, with the policy, ``Retry-After`` and the limit headers."""
    if state.kind == "rate":
        code = "rate_limited"
        message = f"Rate limit {state.name} exceeded ({state.limit} requests per {state.window} s)."
    else:
        code = "quota_exceeded"
        window = "UTC day" if state.name == "daily-quota" else "UTC month"
        message = f"Quota {state.name} exceeded ({state.limit} units per {window})."
    return LimitExceeded(
        code=code,
        message=f"{message} Retry after {retry_after} s.",
        details={"policy": state.name, "limit": state.limit, "window": state.window, "retry_after": retry_after},
        headers={**decision_headers(decision), "Retry-After": str(retry_after)},
    )
