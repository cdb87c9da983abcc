"""Who is calling: API keys turned into key records, from a per-process cache.

:class:`KeyRecords` (one per process, owned by ``quotas.meter``) answers a
key it has verified before with no database or Redis work and no hashing: the
full key string maps to its record. The cache is kept honest by the account's
*generation*, which charge.lua checks on every charge: any change to a key,
its account or the account's plan deletes the generation in Redis
(``quotas.signals``), the next charge on any process comes back stale, and
that process reloads the record before answering. Records are also read
again within ``max_age`` seconds, which bounds staleness if a change could not
reach Redis: the request that finds its record past its age (80 to 100 % of
``max_age``, so that records loaded together are not all due together) reads
again, in one query and one Redis pipeline, every record past 80 % of it (up
to ``REFRESH_BATCH``), so that a process serving many keys does not pay a read
per key and request. ``last_used_at`` is written for every key used since the
previous write, in one UPDATE, at most every ``touch_interval`` seconds per
process: not a write per key.

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
import random
import time
from collections.abc import Callable

from django.db import DatabaseError
from django.utils import timezone

from project.database import database_unavailable, outage
from quotas import keys
from quotas.backends import get_backend
from quotas.contract import Backend
from quotas.exceptions import InvalidApiKey
from quotas.models import ApiKey
from quotas.records import NO_ACCOUNT, KeyRecord, read_account, read_rows, record_from, row_account

log = logging.getLogger("tollgate.quotas")

# Upper bound on how long a record may be used without a reload, whatever the
# generation says (a change made while Redis was unreachable).
RECORD_MAX_AGE = 60.0
# Records past this share of their age are read again with a due one.
REFRESH_AT = 0.8
REFRESH_BATCH = 256
# last_used_at is written at most this often per key and process.
TOUCH_INTERVAL = 60.0
CACHE_SIZE = 10_000


class _Entry:
    """A cached record, the full key that verified against it (if any), the
    share of ``max_age`` it lives, and when it was last noted as used."""

    __slots__ = ("key", "life", "record", "used_at")

    def __init__(self, record: KeyRecord, life: float) -> None:
        self.record = record
        self.life = life
        self.key: str | None = None
        self.used_at: float | None = None


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
        self._written_at = float("-inf")
        self.touch_interval = touch_interval
        self.size = size
        self.backend = backend
        # In the order records were read (a record read again moves to the end).
        self._by_prefix: dict[str, _Entry] = {}
        self._by_key: dict[str, _Entry] = {}
        self._used: set[int] = set()  # key ids used since last_used_at was written
        self._random = random.Random()  # noqa: S311 (spreading reloads, not a secret)

    @property
    def touch_interval(self) -> float:
        return self._touch_interval

    @touch_interval.setter
    def touch_interval(self, seconds: float) -> None:
        self._touch_interval = seconds
        self._write_due = self._written_at + seconds

    def authenticate(self, raw: str, *, generation: str | None = None) -> KeyRecord:
        """The record of a usable key. Raises InvalidApiKey (malformed, bad
        checksum, unknown, wrong secret, revoked, expired, inactive account,
        all alike), ServiceUnavailable if the database does not answer, and
        redis-py's errors if Redis does not. ``generation`` given: load from
        the database alone with that generation, uncached (Redis is down and
        the fail mode is open)."""
        now = time.monotonic()
        entry = self._by_key.get(raw) if generation is None else None
        if entry is None or now - entry.record.loaded_at > self.max_age * entry.life:
            parsed = keys.parse(raw)
            if parsed is None:
                raise InvalidApiKey()
            entry = self._by_prefix.get(parsed.prefix) if generation is None else None
            if entry is not None and keys.secret_matches(parsed.secret, entry.record.secret_hash):
                if now - entry.record.loaded_at > self.max_age * entry.life:
                    # A verified key's record is due: read it again, with
                    # every other record nearly due.
                    self._refresh(now)
                    entry = self._by_prefix.get(parsed.prefix)
                    if entry is None or now - entry.record.loaded_at > self.max_age * entry.life:
                        entry = self._store(self._read(parsed.prefix))
                    if not keys.secret_matches(parsed.secret, entry.record.secret_hash):
                        raise InvalidApiKey()
            else:
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
        if entry.used_at is None or entry.used_at <= self._written_at:
            entry.used_at = now
            self._used.add(record.key_id)
        if now >= self._write_due and self._used:
            self._write_last_used(now)
        return record

    def reload(self, prefix: str) -> KeyRecord | None:
        """The record read again (the account changed), cached; None if the
        key is gone or no longer usable."""
        try:
            record = self._read(prefix)
        except InvalidApiKey:
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

    def _read(self, prefix: str) -> KeyRecord:
        """A cached key's record read again (its account is known, which saves
        a query); raises InvalidApiKey if the key is gone."""
        cached = self._by_prefix.get(prefix)
        record, known = self._load(prefix, None, cached.record.account_id if cached else None)
        if not known:
            raise InvalidApiKey()
        return record

    def _load(self, prefix: str, generation: str | None, account_id: int | None = None) -> tuple[KeyRecord, bool]:
        """Read the record from the database, with a generation read
        *before* the row, so that a change in between is caught as stale
        (``account_id``: the key's account, when known). Returns the record and
        whether the prefix exists; an unknown prefix gets a stand-in record,
        built by the same steps."""
        known_account, given = account_id, generation
        try:
            if account_id is None:
                account_id = read_account(prefix)
            if generation is None:
                generation = self.backend().generation(NO_ACCOUNT if account_id is None else account_id)
            row = read_rows([prefix]).get(prefix)
        except DatabaseError as exc:
            raise database_unavailable(exc) from None
        if row is not None and known_account is not None and row_account(row) != known_account:
            return self._load(prefix, given)  # the key moved: the generation read was another account's
        cached = self._by_prefix.get(prefix)
        return record_from(prefix, row, generation, cached.record.subject if cached else None), row is not None

    def _refresh(self, now: float) -> None:
        """Read again every record past ``REFRESH_AT`` of ``max_age``, the
        oldest first (at most ``REFRESH_BATCH``): their generations in one
        Redis pipeline, then their rows in one query. A key gone or moved to
        another account is dropped (read in full on its next use)."""
        due: list[_Entry] = []
        for entry in self._by_prefix.values():
            if now - entry.record.loaded_at <= self.max_age * REFRESH_AT or len(due) == REFRESH_BATCH:
                break
            due.append(entry)
        try:
            # A missing account hash is restored from the ledger here (a query).
            generations = self.backend().generations(sorted({entry.record.account_id for entry in due}))
            rows = read_rows([entry.record.prefix for entry in due])
        except DatabaseError as exc:
            raise database_unavailable(exc) from None
        for entry in due:
            old = entry.record
            row = rows.get(old.prefix)
            if row is None or row_account(row) != old.account_id:
                self._drop(old.prefix)
                continue
            key = entry.key
            entry = self._store(record_from(old.prefix, row, generations[old.account_id], old.subject))
            if key is not None:
                self._remember_key(entry, key)

    def _store(self, record: KeyRecord) -> _Entry:
        self._drop(record.prefix)
        if len(self._by_prefix) >= self.size:
            self._drop(next(iter(self._by_prefix)))
        entry = self._by_prefix[record.prefix] = _Entry(record, REFRESH_AT + (1 - REFRESH_AT) * self._random.random())
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

    def _write_last_used(self, now: float) -> None:
        used, self._used = self._used, set()
        self._written_at, self._write_due = now, now + self._touch_interval
        try:
            ApiKey.objects.filter(pk__in=used).update(last_used_at=timezone.now())
        except DatabaseError as exc:
            outage.failed(exc)  # logged once per outage; the request goes on
