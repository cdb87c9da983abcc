"""The limiter: one module owns the Redis client, the key names and the scripts.

Every metered request is one ``EVALSHA`` of ``lua/charge.lua``: all rate limits
of the key and all quotas of its account are checked and committed together,
or nothing is. A rejected request consumes nothing.

Backends
--------
:class:`RedisBackend` is the production backend. :class:`quotas.memory.MemoryBackend`
implements the same contract in the process for DEMO_MODE. :func:`get_backend`
picks one from ``settings.DEMO_MODE`` at call time.

Failures are not handled here: a Redis that is down or hung raises redis-py's
``ConnectionError``/``TimeoutError`` after the short timeouts of
``project.redis``, and the HTTP edge (``quotas.middleware``) applies
``RATELIMIT_FAIL_MODE``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django_redis import get_redis_connection
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import ResponseError

from quotas.policy import Quota, RateLimit, Window, window_at

# One hash per account; it lives 64 days past its last write, longer than any
# window (a month) so that a quiet account never loses this month's count.
HASH_TTL_MS = 64 * 86_400_000
QUOTA_FIELDS = {"day": "qd", "month": "qm"}

_LUA = Path(__file__).with_name("lua")


def account_key(account_id: int) -> str:
    """The Redis key of everything counted for an account (a Cluster hash tag)."""
    return f"{getattr(settings, 'QUOTAS_KEY_PREFIX', 'tg:')}{{a{account_id}}}"


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


@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit after a decision: ``window`` in seconds, ``reset_ms`` until
    the limit is whole again (quota window end, GCRA bucket full)."""

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
    """A :class:`Decision` from the reply of charge.lua (shared with the memory backend)."""
    states = []
    position = 4
    for rate in subject.rates:
        states.append(
            LimitState(rate.name, "rate", rate.count, rate.period, int(reply[position]), int(reply[position + 1]))
        )
        position += 2
    for quota, window in zip(subject.quotas, windows, strict=True):
        states.append(
            LimitState(quota.name, "quota", quota.count, window.seconds, int(reply[position]), int(reply[position + 1]))
        )
        position += 2
    allowed = int(reply[0]) == 1
    violated = None if allowed else states[int(reply[2]) - 1]
    return Decision(allowed, tuple(states), violated, 0 if allowed else max(1, _ceil_seconds(int(reply[3]))), now_ms)


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
    ]
    for rate in subject.rates:
        args += (rate_field(subject.key_id, rate), rate.count, rate.period_ms)
    for quota, window in zip(subject.quotas, windows, strict=True):
        args += (QUOTA_FIELDS[quota.window], quota.count, window.id, window.end_ms)
    return args, windows


def _parse_quota_field(raw: bytes | str | None, window: Window) -> int:
    if not raw:
        return 0
    window_id, _, used = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
    return int(used) if window_id == str(window.id) else 0


class RedisBackend:
    """Counters in Redis, through the django-redis connection pool that
    ``project.redis`` configures (short timeouts, one retry, TLS)."""

    name = "redis"

    def __init__(self) -> None:
        # Bytes, so that no client is needed to compute the SHA; redis-py's
        # Script sends EVALSHA and loads the script again after a restart.
        self._charge = Script(None, (_LUA / "charge.lua").read_bytes())  # type: ignore[arg-type]
        self._generation = Script(None, (_LUA / "generation.lua").read_bytes())  # type: ignore[arg-type]
        self._refund = Script(None, (_LUA / "refund.lua").read_bytes())  # type: ignore[arg-type]

    @staticmethod
    def client() -> Redis:
        return get_redis_connection("default")

    def ping(self) -> None:
        self.client().ping()

    def initialize(self) -> None:
        """Load the scripts, so the first request pays for nothing."""
        client = self.client()
        for script in (self._charge, self._generation, self._refund):
            script.sha = client.script_load(script.script)

    def generation(self, account_id: int) -> str:
        raw = self._generation(
            [account_key(account_id)],
            [secrets.token_hex(8), int(time.time() * 1000), HASH_TTL_MS],
            client=self.client(),
        )
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def charge(
        self, subject: Subject, *, rate_cost: int = 1, quota_cost: int = 1, now: float | None = None
    ) -> Decision:
        """Charge ``rate_cost`` against every rate limit and ``quota_cost``
        against every quota, all or nothing. Raises :class:`StaleGeneration`."""
        now_ms = int((time.time() if now is None else now) * 1000)
        args, windows = charge_arguments(subject, rate_cost, quota_cost, now_ms)
        reply = self._charge([account_key(subject.account_id)], args, client=self.client())
        if int(reply[0]) == -1:
            raise StaleGeneration(reply[1])
        return build_decision(subject, reply, now_ms, windows)

    def refund(self, account_id: int, units: int, *, at: float) -> None:
        """Give back ``units`` reserved at ``at`` (epoch seconds) in every
        quota window that is still current."""
        at_ms = int(at * 1000)
        args: list[Any] = [units]
        for window, field in QUOTA_FIELDS.items():
            args += (field, window_at(window, at_ms).id)
        self._refund([account_key(account_id)], args, client=self.client())

    def invalidate(self, account_ids: list[int]) -> None:
        """Make every process reload these accounts on their next request."""
        pipe = self.client().pipeline(transaction=False)
        for account_id in account_ids:
            pipe.hdel(account_key(account_id), "g")
        pipe.execute()

    def usage(self, account_ids: list[int], *, now: float | None = None) -> dict[int, dict[str, int]]:
        """Units used this UTC day and month per account (one round trip)."""
        now_ms = int((time.time() if now is None else now) * 1000)
        windows = {kind: window_at(kind, now_ms) for kind in QUOTA_FIELDS}
        pipe = self.client().pipeline(transaction=False)
        for account_id in account_ids:
            pipe.hmget(account_key(account_id), *QUOTA_FIELDS.values())
        usage = {}
        for account_id, (day, month) in zip(account_ids, pipe.execute(), strict=True):
            usage[account_id] = {
                "day": _parse_quota_field(day, windows["day"]),
                "month": _parse_quota_field(month, windows["month"]),
            }
        return usage

    def traffic(self, keys_by_account: dict[int, list[int]], *, now: float | None = None) -> Traffic:
        """Admitted requests of these accounts and keys over the last hour, in
        one round trip."""
        now_ms = int((time.time() if now is None else now) * 1000)
        pipe = self.client().pipeline(transaction=False)
        for account_id, key_ids in keys_by_account.items():
            pipe.hmget(account_key(account_id), traffic_fields(key_ids))
        values = pipe.execute()
        return traffic_from(list(zip(keys_by_account.values(), values, strict=True)), now_ms)

    def server_info(self) -> dict[str, Any]:
        """Facts about the Redis server, from an allowlist: never its
        configuration or credentials."""
        client = self.client()
        started = time.perf_counter()
        client.ping()
        ping_ms = (time.perf_counter() - started) * 1000
        info = client.info()
        try:
            rdb: bool | None = bool(client.config_get("save").get("save"))
        except ResponseError:  # managed services often disable CONFIG
            rdb = None
        return {
            "version": info.get("redis_version"),
            "used_memory": info.get("used_memory"),
            "used_memory_human": info.get("used_memory_human"),
            "connected_clients": info.get("connected_clients"),
            "persistence": {"rdb": rdb, "aof": bool(info.get("aof_enabled"))},
            "uptime_seconds": info.get("uptime_in_seconds"),
            "ping_ms": round(ping_ms, 3),
        }


_redis_backend: RedisBackend | None = None
_memory_backend: Any = None


def get_backend() -> Backend:
    """The counter backend for the current settings: Redis, or in DEMO_MODE
    the in-process one."""
    global _redis_backend, _memory_backend
    if settings.DEMO_MODE:
        if _memory_backend is None:
            from quotas.memory import MemoryBackend

            _memory_backend = MemoryBackend()
        return _memory_backend
    if _redis_backend is None:
        _redis_backend = RedisBackend()
    return _redis_backend
