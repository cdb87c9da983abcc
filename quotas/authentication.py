"""Who is calling: API keys turned into key records, from a per-process cache.

:class:`KeyRecords` (one per process, owned by ``quotas.meter``) answers a
key it has verified before with no database or Redis work and no hashing: the
full key string maps to its record. The cache is kept honest by the account's
*generation*, which charge.lua checks on every charge: any change to a key,
its account or the account's plan deletes the generation in Redis
(``quotas.signals``), the next charge on any process comes back stale, and
that process reloads the record before answering. Records are also reloaded
after ``max_age`` seconds, which bounds staleness if a change could not reach
Redis.

A failure costs the same whatever the prefix. A well-formed key that does not
authenticate is never refused from the cache: an unknown prefix and a known
prefix with a wrong secret both run the full load (the key row, the
account's generation in Redis, the row again, the record built, the secret
compared in constant time), the unknown one against a stand-in row and the
generation of ``NO_ACCOUNT``. So the time of a refusal says nothing about
which prefixes exist, as Django's login does for unknown users. Malformed
keys and bad checksums are refused before any of it: they name no prefix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DatabaseError
from django.utils import timezone

from project.errors import ServiceUnavailable
from quotas import keys
from quotas.backends import get_backend
from quotas.contract import Backend, Subject
from quotas.exceptions import InvalidApiKey
from quotas.models import ApiKey
from quotas.policy import parse_quotas, parse_rates

log = logging.getLogger("tollgate.quotas")

# Upper bound on how long a record may be used without a reload, whatever the
# generation says (a change made while Redis was unreachable).
RECORD_MAX_AGE = 60.0
# last_used_at is written at most this often per key and process.
TOUCH_INTERVAL = 60.0
CACHE_SIZE = 10_000
# Account ids start at 1: the generation read for an unknown prefix, so that
# it costs what a known prefix costs, is this account's (a hash holding only
# a generation).
NO_ACCOUNT = 0

_ROW = (
    "pk",
    "label",
    "secret_hash",
    "revoked_at",
    "expires_at",
    "account_id",
    "account__name",
    "account__is_active",
    "account__plan__name",
    "account__plan__rate_limits",
    "account__plan__quotas",
    "account__plan__max_upload_bytes",
    "account__plan__max_sync_instances",
)
# The stand-in row of an unknown prefix: a plan shaped like the real ones, and
# a hash no secret has.
_NO_ROW = (0, "", "0" * 64, None, None, NO_ACCOUNT, "", False, "", "100/s, 1000/m", "10000/day, 100000/month", 1, 1)


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


class _Entry:
    """A cached record, the full key that verified against it (if any) and
    when ``last_used_at`` was last written by this process."""

    __slots__ = ("key", "record", "touched_at")

    def __init__(self, record: KeyRecord) -> None:
        self.record = record
        self.key: str | None = None
        self.touched_at = float("-inf")


def _timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class KeyRecords:
    """The key records of one process."""

    def __init__(
        self,
        *,
        max_age: float = RECORD_MAX_AGE,
        touch_interval: float = TOUCH_INTERVAL,
        size: int = CACHE_SIZE,
        backend: Callable[[], Backend] = get_backend,
    ) -> None:
        self.max_age = max_age
        self.touch_interval = touch_interval
        self.size = size
        self.backend = backend
        self._by_prefix: dict[str, _Entry] = {}
        self._by_key: dict[str, _Entry] = {}

    def authenticate(self, raw: str, *, generation: str | None = None) -> KeyRecord:
        """The record of a usable key. Raises InvalidApiKey (malformed, bad
        checksum, unknown, wrong secret, revoked, expired, inactive account,
        all alike), ServiceUnavailable if the database does not answer, and
        redis-py's errors if Redis does not. ``generation`` given: load from
        the database alone with that generation, uncached (Redis is down and
        the fail mode is open)."""
        now = time.monotonic()
        entry = self._by_key.get(raw) if generation is None else None
        if entry is None or now - entry.record.loaded_at > self.max_age:
            parsed = keys.parse(raw)
            if parsed is None:
                raise InvalidApiKey()
            entry = self._by_prefix.get(parsed.prefix) if generation is None else None
            if (
                entry is None
                or now - entry.record.loaded_at > self.max_age
                or not keys.secret_matches(parsed.secret, entry.record.secret_hash)
            ):
                record, known = self._load(parsed.prefix, generation)
                matches = keys.secret_matches(parsed.secret, record.secret_hash)
                if not (known and matches):
                    raise InvalidApiKey()
                if generation is not None:
                    return self._usable(record)
                entry = self._store(record)
            self._remember_key(entry, raw)
        record = entry.record
        if not record.usable or (record.expires_at is not None and record.expires_at <= time.time()):
            raise InvalidApiKey()
        if now - entry.touched_at >= self.touch_interval:
            entry.touched_at = now
            self._touch(record)
        return record

    def reload(self, prefix: str) -> KeyRecord | None:
        """The record read again (the account changed), cached; None if the
        key is gone or no longer usable."""
        record, known = self._load(prefix, None)
        if not known:
            self._drop(prefix)
            return None
        entry = self._store(record)
        return entry.record if record.valid_now() else None

    def forget(self) -> None:
        """Empty the cache (after a change to keys, accounts or plans)."""
        self._by_prefix.clear()
        self._by_key.clear()

    @staticmethod
    def _usable(record: KeyRecord) -> KeyRecord:
        if not record.valid_now():
            raise InvalidApiKey()
        return record

    def _load(self, prefix: str, generation: str | None) -> tuple[KeyRecord, bool]:
        """Read the record from the database, with a generation read
        *before* the row, so that a change in between is caught as stale.
        Returns the record and whether the prefix exists; an unknown prefix
        gets a stand-in record, built by the same steps."""
        try:
            account_id = ApiKey.objects.filter(prefix=prefix).values_list("account_id", flat=True).first()
            if generation is None:
                generation = self.backend().generation(NO_ACCOUNT if account_id is None else account_id)
            row = ApiKey.objects.filter(prefix=prefix).values_list(*_ROW).first()
        except DatabaseError:
            log.exception("Database unavailable while loading API key %s", prefix)
            raise ServiceUnavailable("The database did not answer; retry shortly.") from None
        known = row is not None
        (key_id, label, secret_hash, revoked_at, expires_at, account_id, account_name, is_active, plan_name, rates, quotas, max_upload, max_sync) = row if row is not None else _NO_ROW  # fmt: skip
        record = KeyRecord(
            key_id=key_id,
            prefix=prefix,
            label=label,
            secret_hash=secret_hash,
            account_id=account_id,
            account_name=account_name,
            plan_name=plan_name,
            usable=revoked_at is None and is_active,
            expires_at=_timestamp(expires_at),
            max_upload_bytes=max_upload,
            max_sync_instances=max_sync,
            subject=Subject(account_id, key_id, generation, parse_rates(rates), parse_quotas(quotas)),
            loaded_at=time.monotonic(),
        )
        return record, known

    def _store(self, record: KeyRecord) -> _Entry:
        self._drop(record.prefix)
        if len(self._by_prefix) >= self.size:
            self._drop(next(iter(self._by_prefix)))
        entry = self._by_prefix[record.prefix] = _Entry(record)
        return entry

    def _drop(self, prefix: str) -> None:
        entry = self._by_prefix.pop(prefix, None)
        if entry is not None and entry.key is not None:
            self._by_key.pop(entry.key, None)

    def _remember_key(self, entry: _Entry, raw: str) -> None:
        # One full key verifies against a record: its secret and checksum
        # are fixed by the prefix. Keyed by the string itself, a lookup
        # compares nothing secret byte by byte (a dict compares hashes first).
        if entry.key != raw:
            if entry.key is not None:
                self._by_key.pop(entry.key, None)
            entry.key = raw
            self._by_key[raw] = entry

    @staticmethod
    def _touch(record: KeyRecord) -> None:
        try:
            ApiKey.objects.filter(pk=record.key_id).update(last_used_at=timezone.now())
        except DatabaseError:
            log.warning("Could not record the last use of API key %s", record.prefix)
