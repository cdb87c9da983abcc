"""The Redis backend: the one module that owns the Redis client, the key names
and the scripts.

The hot path (``charge``) is one ``EVALSHA`` on a connection this thread keeps
from the shared django-redis pool, written and read directly: no pool checkout,
no client-side command packing per call (``quotas.codec`` builds the command
from bytes kept per key record). Measured by bench/ratelimit's breakdown, this
is a quarter of the client CPU of ``Redis.evalsha`` through the pool. The
connection is the pool's own kind, so timeouts, TLS, AUTH and the idle health
check are those of ``project.redis``; a failed round trip is retried once on a
fresh connection (a timeout is not: see ``_round_trip``), and a NOSCRIPT reply
(Redis restarted) loads the script and sends the same command again.

Through Sentinel (``REDIS_SENTINELS``) the pool is django-redis's Sentinel
pool: a new connection asks the Sentinels for the master, and a broken one
or a READONLY reply (the master was demoted) is replaced on the next try,
so the service follows a failover without a restart. On a Redis Cluster
(``REDIS_CLUSTER_NODES``) the hot path goes to the node of the account's
slot instead (``quotas.cluster``).
"""

from __future__ import annotations

import functools
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django_redis import get_redis_connection
from redis import Redis
from redis.commands.core import Script
from redis.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from project.redis import counters_role
from quotas import codec
from quotas.cluster import ClusterCounters, as_redis_errors
from quotas.codec import encode
from quotas.contract import HASH_TTL_MS, LEASE_MARGIN, QUOTA_FIELDS, Charge, Subject, parse_quota_field
from quotas.decision import Decision
from quotas.policy import window_at
from quotas.traffic import Traffic, traffic_fields, traffic_from

_LUA = Path(__file__).with_name("lua")


def account_key(account_id: int) -> str:
    """The Redis key of everything counted for an account. The braces are a
    Redis Cluster hash tag: all of an account's state is in one slot."""
    return f"{_key_prefix()}{{a{account_id}}}"


@functools.cache
def _key_prefix() -> str:
    # Cached: reading a setting that is absent costs an exception per call.
    # Cleared when the settings change (tests).
    return getattr(settings, "QUOTAS_KEY_PREFIX", "tg:")


_REDIS_SETTINGS = frozenset(
    {"CACHES", "REDIS_URL", "QUOTAS_KEY_PREFIX", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"}
    | {"REDIS_CLUSTER_NODES", "REDIS_PASSWORD", "REDIS_TLS"}
)


class _Epoch:
    """Bumped when the Redis settings change (tests), so that kept
    connections and encoded commands are replaced."""

    value = 0


_EPOCH = _Epoch()


@receiver(setting_changed)
def _redis_settings_changed(setting: str, **kwargs: Any) -> None:
    if setting in _REDIS_SETTINGS:
        _EPOCH.value += 1
        _key_prefix.cache_clear()


class _Kept(threading.local):
    connection: AbstractConnection | None = None
    pool: ConnectionPool | None = None
    pid = 0
    epoch = -1


class RedisBackend:
    """Counters in Redis, through the django-redis connection pool that
    ``project.redis`` configures (short timeouts, one retry, TLS)."""

    name = "redis"

    def __init__(self, *, lease_margin: int = LEASE_MARGIN) -> None:
        """``lease_margin``: see ``quotas.contract.LEASE_MARGIN`` (tests lower
        it to bring leases up to the limits)."""
        self.lease_margin = lease_margin
        # Bytes, so that no client is needed to compute the SHA.
        self._charge = Script(None, (_LUA / "charge.lua").read_bytes())  # type: ignore[arg-type]
        self._generation = Script(None, (_LUA / "generation.lua").read_bytes())  # type: ignore[arg-type]
        self._refund = Script(None, (_LUA / "refund.lua").read_bytes())  # type: ignore[arg-type]
        self._target = codec.Target(self._charge.sha.encode(), account_key, lease_margin)
        self._target_epoch = _EPOCH.value
        self._kept = _Kept()
        self._cluster = self._cluster_for_settings()

    @staticmethod
    def _cluster_for_settings() -> ClusterCounters | None:
        role = counters_role(settings)
        return ClusterCounters(role, settings.REDIS_SSL_CERT_REQS) if role.kind == "cluster" else None

    def _follow_settings(self) -> None:
        """Rebuild what the Redis settings shape, after they changed (tests)."""
        if self._target_epoch != _EPOCH.value:
            self._target = codec.Target(self._target.script, account_key, self.lease_margin)
            if self._cluster is not None:
                self._cluster.close()
            self._cluster = self._cluster_for_settings()
            self._target_epoch = _EPOCH.value

    @property
    def cluster(self) -> ClusterCounters | None:
        """The Redis Cluster of the counters, or None (one server or Sentinel)."""
        self._follow_settings()
        return self._cluster

    def client(self) -> Redis:
        """A client for everything but the hot path: on the shared pool, or
        the Cluster client (whose pipelines group commands by node)."""
        cluster = self.cluster
        return get_redis_connection("default") if cluster is None else cluster.client  # type: ignore[return-value]

    def connection(self) -> AbstractConnection:
        """The connection this thread keeps for ``charge``: taken from the
        shared pool once, replaced after a fork (a child must not share its
        parent's socket) or a change of the Redis settings."""
        kept = self._kept
        pid = os.getpid()
        if kept.connection is not None and kept.pid == pid and kept.epoch == _EPOCH.value:
            return kept.connection
        if kept.connection is not None and kept.pid == pid and kept.pool is not None:
            kept.pool.release(kept.connection)  # type: ignore[arg-type]
        pool = self.client().connection_pool
        kept.connection, kept.pool, kept.pid, kept.epoch = pool.get_connection(), pool, pid, _EPOCH.value
        return kept.connection

    def _send(self, script: Script, command: bytes, account_id: int) -> Any:
        """One round trip of ``command``, an EVALSHA of ``script`` on the
        account's key; after a NOSCRIPT reply (Redis restarted, a replica
        promoted) the script is loaded and the same command sent again (a
        script's SHA1 never changes)."""
        cluster = self._cluster
        if cluster is not None:
            return self._send_to_slot(cluster, script, command, account_key(account_id))
        connection = self.connection()
        try:
            return _round_trip(connection, command)
        except NoScriptError:
            _round_trip(connection, encode(b"SCRIPT", b"LOAD", script.script))
            return _round_trip(connection, command)

    @staticmethod
    def _send_to_slot(cluster: ClusterCounters, script: Script, command: bytes, key: str) -> Any:
        """:meth:`_send` on a Cluster, to the primary of ``key``'s slot; after
        MOVED the slot map is read again and the command sent once more."""
        for attempt in (1, 2):
            connection = cluster.connection(key)
            try:
                try:
                    return _round_trip(connection, command)
                except NoScriptError:
                    _round_trip(connection, encode(b"SCRIPT", b"LOAD", script.script))
                    return _round_trip(connection, command)
            except MovedError:
                if attempt == 2:
                    raise
                cluster.failed()
                cluster.refresh()
            except (RedisConnectionError, OSError):
                cluster.failed()
                raise
        raise AssertionError("unreachable")

    def _evalsha(self, script: Script, account_id: int, args: list[Any]) -> Any:
        self._follow_settings()
        return self._send(script, encode(b"EVALSHA", script.sha, 1, account_key(account_id), *args), account_id)

    def ping(self) -> None:
        with as_redis_errors():
            self.client().ping()

    def initialize(self) -> None:
        """Load the scripts (on every primary of a Cluster), so the first
        request pays for nothing."""
        with as_redis_errors():
            client = self.client()
            for script in (self._charge, self._generation, self._refund):
                script.sha = client.script_load(script.script)

    def generation(self, account_id: int) -> str:
        """The account's generation, created if missing (``lua/generation.lua``)."""
        raw = self._evalsha(self._generation, account_id, [secrets.token_hex(8), int(time.time() * 1000), HASH_TTL_MS])
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def generations(self, account_ids: list[int]) -> dict[int, str]:
        """:meth:`generation` of several accounts, in one pipeline (one per
        primary on a Cluster)."""
        now = int(time.time() * 1000)
        keys = [account_key(account_id) for account_id in account_ids]
        cluster = self.cluster
        groups = [(self.client(), list(range(len(keys))))] if cluster is None else cluster.by_node(keys)
        replies: list[Any] = [None] * len(keys)
        for client, indexes in groups:
            pipe = client.pipeline(transaction=False)
            for index in indexes:
                self._generation(keys=[keys[index]], args=[secrets.token_hex(8), now, HASH_TTL_MS], client=pipe)
            for index, raw in zip(indexes, _execute(pipe), strict=True):
                replies[index] = raw
        return {
            account_id: raw.decode() if isinstance(raw, bytes) else str(raw)
            for account_id, raw in zip(account_ids, replies, strict=True)
        }

    def charge(self, subject: Subject, charge: Charge, now_ms: int) -> Decision:
        """Decide ``charge`` at ``now_ms`` (epoch ms), all or nothing, in one
        round trip. Raises :class:`~quotas.contract.StaleGeneration`, and
        redis-py's ConnectionError/TimeoutError."""
        if self._target_epoch != _EPOCH.value:  # the key prefix may have changed
            self._follow_settings()
        command, frame = codec.command(subject, charge, now_ms, self._target)
        reply = codec.decode(
            self._send(self._charge, command, subject.account_id), len(subject.rates), len(subject.quotas)
        )
        return Decision(subject, reply, now_ms, frame.windows)

    def refund(self, account_id: int, units: int, *, at: float) -> None:
        """Give back ``units`` reserved at ``at`` (epoch seconds) in every
        quota window that is still current."""
        at_ms = int(at * 1000)
        args: list[Any] = [units]
        for window, field in QUOTA_FIELDS.items():
            args += (field, window_at(window, at_ms).id)
        self._evalsha(self._refund, account_id, args)

    def invalidate(self, account_ids: list[int]) -> None:
        """Make every process reload these accounts on their next request."""
        pipe = self.client().pipeline(transaction=False)
        for account_id in account_ids:
            pipe.hdel(account_key(account_id), "g")
        _execute(pipe)

    def usage(self, account_ids: list[int], *, now: float | None = None) -> dict[int, dict[str, int]]:
        """Units used this UTC day and month per account (one round trip)."""
        now_ms = int((time.time() if now is None else now) * 1000)
        windows = {kind: window_at(kind, now_ms) for kind in QUOTA_FIELDS}
        pipe = self.client().pipeline(transaction=False)
        for account_id in account_ids:
            pipe.hmget(account_key(account_id), *QUOTA_FIELDS.values())
        usage = {}
        for account_id, (day, month) in zip(account_ids, _execute(pipe), strict=True):
            usage[account_id] = {
                "day": parse_quota_field(day, windows["day"].id),
                "month": parse_quota_field(month, windows["month"].id),
            }
        return usage

    def traffic(self, keys_by_account: dict[int, list[int]], *, now: float | None = None) -> Traffic:
        """Admitted requests of these accounts and keys over the last hour, in
        one round trip."""
        now_ms = int((time.time() if now is None else now) * 1000)
        pipe = self.client().pipeline(transaction=False)
        for account_id, key_ids in keys_by_account.items():
            pipe.hmget(account_key(account_id), traffic_fields(key_ids))
        values = _execute(pipe)
        return traffic_from(list(zip(keys_by_account.values(), values, strict=True)), now_ms)

    def server_info(self) -> dict[str, Any]:
        """Facts about the Redis server (summed over a Cluster's primaries),
        from an allowlist: never its configuration or credentials."""
        cluster = self.cluster
        if cluster is not None:
            with as_redis_errors():
                facts = cluster.server_info()
            return {
                "version": facts["version"],
                "nodes": facts["nodes"],
                "used_memory": facts["used_memory"],
                "used_memory_human": f"{facts['used_memory'] / 1048576:.2f}M",
                "connected_clients": facts["connected_clients"],
                "persistence": {"rdb": None, "aof": facts["aof"]},
                "uptime_seconds": facts["uptime_seconds"],
                "ping_ms": facts["ping_ms"],
            }
        return server_facts(self.client())


def server_facts(client: Redis) -> dict[str, Any]:
    """Facts about the server ``client`` talks to, from an allowlist: never
    its configuration or credentials."""
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


def _execute(pipe: Any) -> list[Any]:
    """``pipe.execute()``, a Cluster's own failures raised as redis-py's
    ConnectionError (``quotas.cluster.as_redis_errors``)."""
    with as_redis_errors():
        return pipe.execute()  # type: ignore[no-any-return]


def _round_trip(connection: AbstractConnection, command: bytes) -> Any:
    """Send one encoded command and read its reply.

    A broken connection (closed by the server while idle, Redis restarted) is
    retried once on a fresh one: the command never ran. A timeout is not
    retried: the command may have run, or may run when a paused Redis wakes,
    and running a charge twice would count the request twice; it is raised,
    which also bounds a hung Redis to one socket timeout (0.25 s). A server
    error reply is raised at once."""
    try:
        connection.send_packed_command([command])
        return connection.read_response()
    except RedisTimeoutError:
        connection.disconnect()
        raise
    except (RedisConnectionError, OSError):
        connection.disconnect()
        connection.send_packed_command([command])
        return connection.read_response()
