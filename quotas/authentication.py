"""Who is calling: API keys turned into key records, from a per-process cache.

:class:`KeyRecords` (one per process, owned by ``quotas.meter``) answers a
key it has verified before with no database or Redis work and no hashing: the
full key string maps to its record. The cache is kept honest by the account's
*generation*, which charge.lua checks on every charge: any change to a key,
its account or the account's plan deletes the generation in Redis
(``quotas.signals``), the next charge on any process comes back stale, and
that process reloads the record before answering. Records are also reloaded
within ``max_age`` seconds (each after 80 to 100 % of it, so that records
loaded together are not reloaded together), which bounds staleness if a
change could not reach Redis. ``last_used_at`` is written for every key used
since the previous write, in one UPDATE, at most every ``touch_interval``
seconds per process: not a write per key.

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

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC

from django.db import DatabaseError, connection, models
from django.utils import timezone

from project.errors import ServiceUnavailable
from quotas import keys
from quotas.backends import get_backend
from quotas.contract import Backend, Subject
from quotas.exceptions import InvalidApiKey
from quotas.models import Account, ApiKey, Plan
from quotas.policy import Quota, RateLimit, parse_quotas, parse_rates

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

# A key record's columns: (model, field) in the order _load unpacks them.
_ROW = (
    (ApiKey, "id"),
    (ApiKey, "label"),
    (ApiKey, "secret_hash"),
    (ApiKey, "revoked_at"),
    (ApiKey, "expires_at"),
    (ApiKey, "account"),
    (Account, "name"),
    (Account, "is_active"),
    (Plan, "name"),
    (Plan, "rate_limits"),
    (Plan, "quotas"),
    (Plan, "max_upload_bytes"),
    (Plan, "max_sync_instances"),
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
    """A cached record, the full key that verified against it (if any), the
    share of ``max_age`` it lives, and when it was last noted as used."""

    __slots__ = ("key", "life", "record", "used_at")

    def __init__(self, record: KeyRecord, life: float) -> None:
        self.record = record
        self.life = life
        self.key: str | None = None
        self.used_at: float | None = None


@functools.cache
def _queries(vendor: str) -> tuple[str, str]:
    """The two reads of a key record (its account id; the whole row), as SQL
    written once from the models' own tables and columns. Through the ORM each
    would be compiled again on every load (about 0.3 and 0.8 ms of CPU), and
    every process loads every key it serves once a minute."""
    quote = connection.ops.quote_name

    def column(model: type[models.Model], name: str) -> str:
        field = model._meta.get_field(name)
        if not isinstance(field, models.Field) or field.column is None:
            raise TypeError(f"{model.__name__}.{name} is not a column")
        return f"{quote(model._meta.db_table)}.{quote(field.column)}"

    # Only table and column names are formatted in (quoted); the prefix is a
    # query parameter.
    prefix = column(ApiKey, "prefix")
    key_table, account_table, plan_table = (quote(m._meta.db_table) for m in (ApiKey, Account, Plan))
    account = f"SELECT {column(ApiKey, 'account')} FROM {key_table} WHERE {prefix} = %s"  # noqa: S608
    row = (
        f"SELECT {', '.join(column(model, name) for model, name in _ROW)} FROM {key_table}"  # noqa: S608
        f" INNER JOIN {account_table} ON {column(Account, 'id')} = {column(ApiKey, 'account')}"
        f" INNER JOIN {plan_table} ON {column(Plan, 'id')} = {column(Account, 'plan')}"
        f" WHERE {prefix} = %s"
    )
    return account, row


def _expiry(value: object) -> float | None:
    """``expires_at`` as read by a cursor (a datetime, or text on SQLite) in
    epoch seconds."""
    moment = ApiKey._meta.get_field("expires_at").to_python(value)
    if moment is None:
        return None
    return (timezone.make_aware(moment, UTC) if timezone.is_naive(moment) else moment).timestamp()


@functools.lru_cache(maxsize=1024)
def _limits(rates: str, quotas: str) -> tuple[tuple[RateLimit, ...], tuple[Quota, ...]]:
    """A plan's limits from their text (parsed once per text and process)."""
    return parse_rates(rates), parse_quotas(quotas)


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
                    # A verified key's record has aged: read it again (its
                    # account is known, which saves a query).
                    record, known = self._load(parsed.prefix, None, entry.record.account_id)
                    if not (known and keys.secret_matches(parsed.secret, record.secret_hash)):
                        raise InvalidApiKey()
                    entry = self._store(record)
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
        cached = self._by_prefix.get(prefix)
        record, known = self._load(prefix, None, cached.record.account_id if cached else None)
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

    def _load(self, prefix: str, generation: str | None, account_id: int | None = None) -> tuple[KeyRecord, bool]:
        """Read the record from the database, with a generation read
        *before* the row, so that a change in between is caught as stale
        (``account_id``: the key's account, when known). Returns the record and
        whether the prefix exists; an unknown prefix gets a stand-in record,
        built by the same steps."""
        known_account, given = account_id, generation
        account_sql, row_sql = _queries(connection.vendor)
        try:
            with connection.cursor() as cursor:
                if account_id is None:
                    cursor.execute(account_sql, [prefix])
                    found = cursor.fetchone()
                    account_id = found[0] if found else None
                if generation is None:
                    generation = self.backend().generation(NO_ACCOUNT if account_id is None else account_id)
                cursor.execute(row_sql, [prefix])
                row = cursor.fetchone()
        except DatabaseError:
            log.exception("Database unavailable while loading API key %s", prefix)
            raise ServiceUnavailable("The database did not answer; retry shortly.") from None
        if row is not None and known_account is not None and row[5] != known_account:
            return self._load(prefix, given)  # the key moved: the generation read was another account's
        known = row is not None
        (key_id, label, secret_hash, revoked_at, expires_at, account_id, account_name, is_active, plan_name, rates, quotas, max_upload, max_sync) = row if row is not None else _NO_ROW  # fmt: skip
        subject = Subject(account_id, key_id, generation, *_limits(rates, quotas))
        cached = self._by_prefix.get(prefix)
        if cached is not None and cached.record.subject == subject:
            # Unchanged: keep the subject, with what the backends derived from
            # it (encoded arguments, header text) and the leases held on it.
            subject = cached.record.subject
        record = KeyRecord(
            key_id=key_id,
            prefix=prefix,
            label=label,
            secret_hash=secret_hash,
            account_id=account_id,
            account_name=account_name,
            plan_name=plan_name,
            usable=revoked_at is None and bool(is_active),
            expires_at=_expiry(expires_at),
            max_upload_bytes=max_upload,
            max_sync_instances=max_sync,
            subject=subject,
            loaded_at=time.monotonic(),
        )
        return record, known

    def _store(self, record: KeyRecord) -> _Entry:
        self._drop(record.prefix)
        if len(self._by_prefix) >= self.size:
            self._drop(next(iter(self._by_prefix)))
        entry = self._by_prefix[record.prefix] = _Entry(record, 0.8 + 0.2 * self._random.random())
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
        except DatabaseError:
            log.warning("Could not record the last use of %d API key(s)", len(used))
