"""The usage ledger in the database: batches applied once, and what it holds.

Redis is the fast path, the database the truth. Every admitted charge leaves
its requests and units, per key and UTC day, in the account's usage hash
(``charge.lua``'s KEYS[2]); the flusher (``quotas.flusher``) drains those
hashes into :class:`Batch` es and :func:`ledger_apply` adds them to
:class:`~quotas.models.UsageRecord` rows. Each batch carries a token drawn
when Redis handed it out, and a batch is applied in the same transaction
that records its token (:class:`~quotas.models.LedgerBatch`, unique): a
batch handed out twice (its flusher killed before it acknowledged it, two
flushers at once) is added once, and one that reached Redis is kept there
until a flusher has applied it.

The ledger is also where counters come back from (:func:`restore_state`),
and what clients and operators read (``quotas.history``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from quotas.contract import DAY_MS, rate_field
from quotas.models import Account, CounterEpoch, LedgerBatch, UsageRecord
from quotas.policy import RateLimit, parse_rates

log = logging.getLogger("tollgate.quotas")

# A batch's token is remembered this long after it was applied. A batch is
# acknowledged (deleted from Redis) right after, so only a batch left
# unacknowledged longer than this (no flusher running for weeks) could be
# applied twice.
BATCH_RETENTION_DAYS = 35
# Batch tokens recorded per statement.
TOKEN_CHUNK = 500
# Key id of the ledger rows that hold refunds (not tied to a key).
REFUND_KEY = 0


def epoch_day(day: dt.date) -> int:
    """Days since 1970-01-01 (the day numbers of ``charge.lua``)."""
    return (day - dt.date(1970, 1, 1)).days


def day_of(number: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=number)


@dataclass(slots=True)
class Batch:
    """Usage of one account handed out by Redis: per (key id, day number),
    ``[requests, units, refunded]``."""

    account_id: int
    token: str
    drained_ms: int
    entries: dict[tuple[int, int], list[int]] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, account_id: int, fields: dict[str, str]) -> Batch:
        """A batch from a drained hash: ``#`` its token, ``@`` when it was
        drained, ``<key>:<day>:r|d|f`` requests, units minus requests, and
        refunded units (``charge.lua``'s header)."""
        batch = cls(account_id, fields.get("#", ""), int(fields.get("@", 0) or 0))
        for name, value in fields.items():
            key_id, _, rest = name.partition(":")
            day, _, kind = rest.partition(":")
            if kind not in ("r", "d", "f") or not key_id.isdigit() or not day.isdigit():
                continue
            entry = batch.entries.setdefault((int(key_id), int(day)), [0, 0, 0])
            count = int(value)
            if kind == "r":
                entry[0] += count
                entry[1] += count
            elif kind == "d":
                entry[1] += count
            else:
                entry[2] += count
        return batch

    @property
    def units(self) -> int:
        return sum(entry[1] for entry in self.entries.values())


def _upsert_sql() -> str:
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    columns = ("account_id", "key_id", "day", "requests", "units", "refunded")
    added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in ("requests", "units", "refunded"))
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608
        f" ON CONFLICT (account_id, key_id, day) DO UPDATE SET {added}"
    )


def _add(totals: dict[tuple[int, int, int], list[int]]) -> None:
    """Add ``totals`` ((account, key, day number) -> [requests, units,
    refunded]) to the ledger rows, creating the missing ones; inside the
    caller's transaction."""
    adapt = connection.ops.adapt_datefield_value
    rows = [
        (account_id, key_id, adapt(day_of(day)), *values)
        for (account_id, key_id, day), values in sorted(totals.items())
        if any(values)
    ]
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(_upsert_sql(), rows)


def _record_tokens(batches: list[Batch]) -> list[Batch]:
    """Record the batches' tokens, inside the caller's transaction; returns
    those recorded now (the others the ledger held already). One write
    first, never a read then a write: SQLite then waits for a concurrent
    writer instead of failing, and PostgreSQL makes a concurrent insert of
    the same token wait for this transaction and then do nothing."""
    table = connection.ops.quote_name(LedgerBatch._meta.db_table)
    applied_at = connection.ops.adapt_datetimefield_value(timezone.now())
    fresh: set[tuple[int, str]] = set()
    for start in range(0, len(batches), TOKEN_CHUNK):
        chunk = batches[start : start + TOKEN_CHUNK]
        sql = (
            f"INSERT INTO {table} (account_id, token, drained_ms, applied_at) VALUES "  # noqa: S608
            + ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
            + " ON CONFLICT (account_id, token) DO NOTHING RETURNING account_id, token"
        )
        params = [value for batch in chunk for value in (batch.account_id, batch.token, batch.drained_ms, applied_at)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            fresh.update((int(account_id), token) for account_id, token in cursor.fetchall())
    return [batch for batch in batches if (batch.account_id, batch.token) in fresh]


def ledger_apply(*, batches: list[Batch]) -> list[Batch]:
    """Add to the ledger every batch whose token it has not recorded yet, in
    one transaction with the tokens. Returns the batches the ledger now
    holds (applied now or before): those the caller may acknowledge. Raises
    DatabaseError (nothing applied)."""
    if not batches:
        return []
    with transaction.atomic():
        totals: dict[tuple[int, int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
        for batch in _record_tokens(batches):
            for (key_id, day), values in batch.entries.items():
                total = totals[batch.account_id, key_id, day]
                for index, value in enumerate(values):
                    total[index] += value
        _add(totals)
    return batches


def ledger_refund(*, account_id: int, units: int, day: dt.date) -> None:
    """Record a refund of ``units`` reserved on ``day`` straight in the
    ledger (used when the counters it was reserved in are gone, see
    ``quotas.redis_backend.RedisBackend.refund``). Raises DatabaseError."""
    with transaction.atomic():
        _add({(account_id, REFUND_KEY, epoch_day(day)): [0, -units, units]})


def fence_refund(*, account_id: int, units: int, at_ms: int, created_ms: int | None) -> bool:
    """A refund of units reserved at ``at_ms`` in counters that are gone
    (the current ones were created at ``created_ms``, or not yet: None):
    recorded in the ledger if it holds the reservation, else dropped (it was
    lost with those counters). Returns whether it was recorded. Raises
    DatabaseError."""
    if drained_since(account_id=account_id, since_ms=at_ms, until_ms=created_ms):
        ledger_refund(account_id=account_id, units=units, day=day_of(at_ms // DAY_MS))
        log.warning(
            "Refund of %s units to account %s recorded in the ledger only: the counters they were reserved in "
            "were lost (restored from the ledger since)",
            units,
            account_id,
        )
        return True
    log.warning(
        "Refund of %s units to account %s dropped: the counters they were reserved in were lost before the "
        "reservation reached the ledger",
        units,
        account_id,
    )
    return False


def drained_since(*, account_id: int, since_ms: int, until_ms: int | None) -> bool:
    """Whether the ledger holds a batch of the account drained within
    ``[since_ms, until_ms)``: then everything the account used before
    ``since_ms`` in the counters of that time is in the ledger."""
    batches = LedgerBatch.objects.filter(account_id=account_id, drained_ms__gte=since_ms)
    if until_ms is not None:
        batches = batches.filter(drained_ms__lt=until_ms)
    return batches.exists()


def ledger_prune(*, now: dt.datetime) -> int:
    """Forget the tokens of batches applied more than BATCH_RETENTION_DAYS
    ago. Returns how many."""
    deleted, _ = LedgerBatch.objects.filter(applied_at__lt=now - dt.timedelta(days=BATCH_RETENTION_DAYS)).delete()
    return deleted


@dataclass(frozen=True, slots=True)
class Restored:
    """An account's counters as the ledger has them at ``now_ms``: units of
    the UTC day and month, and per key hash field a GCRA state."""

    day_units: int
    month_units: int
    rates: dict[str, str]


def _tat(now_ms: int, rate: RateLimit, requests: int) -> str:
    """A GCRA state as if ``requests`` (at most the limit) had all been
    admitted just now: ``"<ms>:<frac>"`` of ``charge.lua``."""
    spent = min(requests, rate.count) * rate.period_ms
    return f"{now_ms + spent // rate.count}:{spent % rate.count}"


def restore_state(*, account_id: int, now_ms: int) -> Restored:
    """The account's counters rebuilt from the ledger (two queries).

    Quotas get the units the ledger holds for the current UTC day and month.
    Rate limits cannot be rebuilt exactly (the ledger counts per day), so
    they are rebuilt conservatively: for each key and rate limit, the
    requests the ledger holds on the UTC days the limit's period reaches
    back into are taken as made just now, up to the limit; the limit then
    refills at its own pace. Never more is admitted than exact GCRA would
    admit; at most one period of a key's limit is lost. Raises DatabaseError.
    """
    today = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC).date()
    month_start = today.replace(day=1)
    plan = Account.objects.filter(pk=account_id).values_list("plan__rate_limits", flat=True).first()
    rates = parse_rates(plan) if plan else ()
    longest = max((rate.period_ms for rate in rates), default=0)
    earliest = min(month_start, day_of((now_ms - longest) // DAY_MS))
    rows = UsageRecord.objects.filter(account_id=account_id, day__gte=earliest, day__lte=today)
    day_units = month_units = 0
    requests: dict[int, dict[int, int]] = defaultdict(dict)
    for key_id, day, day_requests, units in rows.values_list("key_id", "day", "requests", "units"):
        if day == today:
            day_units += units
        if day >= month_start:
            month_units += units
        if key_id != REFUND_KEY and day_requests > 0:
            requests[key_id][epoch_day(day)] = day_requests
    fields: dict[str, str] = {}
    for key_id, by_day in requests.items():
        for rate in rates:
            first = (now_ms - rate.period_ms) // DAY_MS
            made = sum(count for number, count in by_day.items() if number >= first)
            if made > 0:
                fields[rate_field(key_id, rate)] = _tat(now_ms, rate, made)
    return Restored(max(day_units, 0), max(month_units, 0), fields)


def account_usage(*, account_ids: list[int], since: dt.date, until: dt.date) -> dict[int, int]:
    """Units per account in the ledger between two UTC days (inclusive)."""
    rows = (
        UsageRecord.objects.filter(account_id__in=account_ids, day__gte=since, day__lte=until)
        .values_list("account_id")
        .annotate(total=Sum("units"))
    )
    return dict(rows)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class LedgerStatus:
    """What the operations page and ``/admin/health/redis`` say about the
    ledger: when Redis was last found to have lost its data (the counters
    are restored from the ledger since, account by account), and when a
    batch was last applied."""

    counters_restored_at: dt.datetime | None
    last_flush_at: dt.datetime | None

    @property
    def recently_restored(self) -> bool:
        """Within the last day: the operations page says so in a banner."""
        moment = self.counters_restored_at
        return moment is not None and moment > dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=1)

    def as_json(self) -> dict[str, str | None]:
        return {
            "counters_restored_at": _iso(self.counters_restored_at),
            "last_flush_at": _iso(self.last_flush_at),
        }


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else None


def ledger_status() -> LedgerStatus:
    """Two small queries. Raises DatabaseError."""
    lost = CounterEpoch.objects.filter(lost=True).order_by("-seen_at").values_list("seen_at", flat=True).first()
    flushed = LedgerBatch.objects.order_by("-applied_at").values_list("applied_at", flat=True).first()
    return LedgerStatus(lost, flushed)
