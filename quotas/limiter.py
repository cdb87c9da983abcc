"""The limiter's contract: what is charged, what a decision says, and the
layout of the arguments of ``lua/charge.lua`` that both backends share.

Every metered request is one ``EVALSHA`` of ``lua/charge.lua``: all rate limits
of the key and all quotas of its account are checked and committed together,
or nothing is. A rejected request consumes nothing.

Backends
--------
:class:`quotas.redis_backend.RedisBackend` is the production backend; it owns
the Redis client, the key names and the scripts.
:class:`quotas.memory.MemoryBackend` implements the same contract in the
process for DEMO_MODE. :func:`get_backend` picks one from
``settings.DEMO_MODE`` at call time.

Failures are not handled here: a Redis that is down or hung raises redis-py's
``ConnectionError``/``TimeoutError`` after the short timeouts of
``project.redis``, and the HTTP edge (``quotas.middleware``) applies
``RATELIMIT_FAIL_MODE``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from django.conf import settings

from quotas.policy import Quota, RateLimit, Window, window_at

# One hash per account; it lives 64 days past its last write, longer than any
# window (a month) so that a quiet account never loses this month's count.
HASH_TTL_MS = 64 * 86_400_000
QUOTA_FIELDS = {"day": "qd", "month": "qm"}


def rate_field(key_id: int, rate: RateLimit) -> str:
    return f"r{key_id}:{rate.count}/{rate.period_ms}"


# Traffic counters for the operations page, kept in the same hash and written
# by the same script: admitted requests per account per minute (a ring of 60:
# the last hour) and per key per 10 minutes (a ring of 7: the current bucket
# and the six before it, so at least the last full hour).
BUCKET_MS = 600_000
MINUTES, BUCKETS = 60, 7


def minute_field(minute: int) -> str:
    return f"m{minute % MINUTES}"


def key_bucket_field(key_id: int, bucket: int) -> str:
    return f"k{key_id}:{bucket % BUCKETS}"


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is charged and under which limits: an API key of an account, as
    loaded from the database together with the account's ``generation``."""

    account_id: int
    key_id: int
    generation: str
    rates: tuple[RateLimit, ...]
    quotas: tuple[Quota, ...]
    # Derived once, used by every charge: charge.lua's arguments for the rate
    # limits, and (name, kind, limit) of each rate limit for the decision.
    rate_args: tuple[Any, ...] = field(init=False, repr=False, compare=False)
    rate_names: tuple[tuple[str, int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rate_args: list[Any] = []
        for rate in self.rates:
            rate_args += (rate_field(self.key_id, rate), rate.count, rate.period_ms)
        object.__setattr__(self, "rate_args", tuple(rate_args))
        object.__setattr__(self, "rate_names", tuple((rate.name, rate.count, rate.period) for rate in self.rates))


class LimitState(NamedTuple):
    """One limit after a decision: ``window`` in seconds, ``reset_ms`` until
    the limit is whole again (quota window end, GCRA bucket full). A named
    tuple: several are built per request."""

    name: str
    kind: str  # "rate" or "quota"
    limit: int
    window: int
    remaining: int
    reset_ms: int

    @property
    def reset(self) -> int:
        """Seconds until reset, rounded up."""
        return -(-self.reset_ms // 1000)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one charge. ``retry_after`` (seconds) is 0 when allowed;
    otherwise waiting that long is enough for the same charge to pass, unless
    the charge is larger than the quota itself."""

    allowed: bool
    states: tuple[LimitState, ...]
    violated: LimitState | None
    retry_after: int
    at_ms: int

    def reset_at(self, state: LimitState) -> int:
        """Epoch seconds (rounded up) at which ``state`` resets."""
        return -(-(self.at_ms + state.reset_ms) // 1000)

    @property
    def most_restrictive(self) -> LimitState | None:
        if self.violated is not None:
            return self.violated
        return min(self.states, key=lambda s: (s.remaining, -s.reset_ms), default=None)


@dataclass(frozen=True, slots=True)
class Traffic:
    """Admitted requests over the last hour: ``per_minute`` is 60 pairs
    ``(minute start, epoch seconds; count)``, oldest first, the current
    minute last; ``per_key`` counts each key's requests in the current
    10-minute bucket and the six before it (60 to 70 minutes)."""

    per_minute: list[tuple[int, int]]
    per_key: dict[int, int]


def traffic_fields(key_ids: list[int]) -> list[str]:
    """The hash fields read for :class:`Traffic`: the minute ring, then each
    key's bucket ring."""
    return [f"m{slot}" for slot in range(MINUTES)] + [
        f"k{key_id}:{slot}" for key_id in key_ids for slot in range(BUCKETS)
    ]


def traffic_from(rows: list[tuple[list[int], list[Any]]], now_ms: int) -> Traffic:
    """Sum the traffic fields of several accounts (``(key ids, HMGET values)``)."""
    minute_now, bucket_now = now_ms // 60_000, now_ms // BUCKET_MS
    minutes = dict.fromkeys(range(minute_now - MINUTES + 1, minute_now + 1), 0)
    per_key: dict[int, int] = {}
    for key_ids, values in rows:
        for raw in values[:MINUTES]:
            period, count = _parse_counter(raw)
            if period in minutes:
                minutes[period] += count
        for index, key_id in enumerate(key_ids):
            total = 0
            for raw in values[MINUTES + index * BUCKETS : MINUTES + (index + 1) * BUCKETS]:
                period, count = _parse_counter(raw)
                if bucket_now - BUCKETS < period <= bucket_now:
                    total += count
            per_key[key_id] = total
    return Traffic([(minute * 60, count) for minute, count in minutes.items()], per_key)


def _parse_counter(raw: bytes | str | None) -> tuple[int, int]:
    if not raw:
        return -1, 0
    period, _, count = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
    return int(period), int(count)


class StaleGeneration(Exception):
    """The account changed since the caller loaded it: reload and retry."""


class Backend(Protocol):
    name: str

    def ping(self) -> None: ...
    def initialize(self) -> None: ...
    def generation(self, account_id: int) -> str: ...
    def charge(
        self, subject: Subject, *, rate_cost: int = 1, quota_cost: int = 1, now: float | None = None
    ) -> Decision: ...
    def refund(self, account_id: int, units: int, *, at: float) -> None: ...
    def invalidate(self, account_ids: list[int]) -> None: ...
    def usage(self, account_ids: list[int], *, now: float | None = None) -> dict[int, dict[str, int]]: ...
    def traffic(self, keys_by_account: dict[int, list[int]], *, now: float | None = None) -> Traffic: ...
    def server_info(self) -> dict[str, Any]: ...


def _ceil_seconds(ms: int) -> int:
    return -(-ms // 1000)


def build_decision(subject: Subject, reply: list[Any], now_ms: int, windows: list[Window]) -> Decision:
    """A :class:`Decision` from the reply of charge.lua (shared with the
    memory backend): the script returns the state after the decision, and
    what is left and when it resets are derived here, in exact integers."""
    states = []
    position = 4
    for name, count, period in subject.rate_names:
        # The TAT is a + b/count ms; the bucket holds `period` ms of debt.
        a, b = int(reply[position]), int(reply[position + 1])
        period_ms = period * 1000
        remaining = min(max(((now_ms + period_ms - a) * count - b) // period_ms, 0), count)
        states.append(LimitState(name, "rate", count, period, remaining, max(a + (1 if b else 0) - now_ms, 0)))
        position += 2
    for quota, window in zip(subject.quotas, windows, strict=True):
        used = int(reply[position])
        states.append(
            LimitState(
                quota.name, "quota", quota.count, window.seconds, max(quota.count - used, 0), window.end_ms - now_ms
            )
        )
        position += 1
    if int(reply[0]) == 1:
        return Decision(True, tuple(states), None, 0, now_ms)
    return Decision(False, tuple(states), states[int(reply[2]) - 1], max(1, _ceil_seconds(int(reply[3]))), now_ms)


def charge_arguments(subject: Subject, rate_cost: int, quota_cost: int, now_ms: int) -> tuple[list[Any], list[Window]]:
    """ARGV for charge.lua, and the quota windows it refers to."""
    windows = [window_at(quota.window, now_ms) for quota in subject.quotas]
    minute, bucket = now_ms // 60_000, now_ms // BUCKET_MS
    args: list[Any] = [
        now_ms,
        subject.generation,
        rate_cost,
        quota_cost,
        len(subject.rates),
        len(subject.quotas),
        HASH_TTL_MS,
        minute,
        minute_field(minute),
        bucket,
        key_bucket_field(subject.key_id, bucket),
        *subject.rate_args,
    ]
    for quota, window in zip(subject.quotas, windows, strict=True):
        args += (QUOTA_FIELDS[quota.window], quota.count, window.id, window.end_ms)
    return args, windows


def parse_quota_field(raw: bytes | str | None, window: Window) -> int:
    """Units used in ``window`` from a stored quota field ("<window id>:<used>")."""
    if not raw:
        return 0
    window_id, _, used = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
    return int(used) if window_id == str(window.id) else 0


def get_backend() -> Backend:
    """The counter backend for the current settings: Redis, or in DEMO_MODE
    the in-process one. One instance of each per process."""
    return _backend(settings.DEMO_MODE)


@functools.cache
def _backend(demo_mode: bool) -> Backend:
    if demo_mode:
        from quotas.memory import MemoryBackend  # both import this module

        return MemoryBackend()
    from quotas.redis_backend import RedisBackend

    return RedisBackend()
