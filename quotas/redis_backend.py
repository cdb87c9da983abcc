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
import hashlib
import logging
import os
import re
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
from quotas.contract import (
    DAY_MS,
    HASH_TTL_MS,
    LEASE_MARGIN,
    QUOTA_FIELDS,
    USAGE_SUFFIX,
    Charge,
    Subject,
    parse_quota_field,
)
from quotas.decision import Decision
from quotas.ledger import Batch, Restored, fence_refund, restore_state
from quotas.policy import window_at
from quotas.traffic import Traffic, traffic_fields, traffic_from

_LUA = Path(__file__).with_name("lua")
log = logging.getLogger("tollgate.quotas")
# Accounts drained per pipeline by the flusher.
DRAIN_CHUNK = 200


def account_key(account_id: int) -> str:
    """The Redis key of everything counted for an account. The braces are a
    Redis Cluster hash tag: all of an account's state is in one slot."""
    return f"{_key_prefix()}{{a{account_id}}}"


def usage_key(account_id: int) -> str:
    """The account's usage not yet in the ledger (``charge.lua``'s KEYS[2])."""
    return account_key(account_id) + USAGE_SUFFIX


def batch_key(account_id: int) -> str:
    """The account's usage handed to a flusher (``drain.lua``)."""
    return account_key(account_id) + BATCH_SUFFIX


BATCH_SUFFIX = ":b"


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
        self._restore = Script(None, (_LUA / "restore.lua").read_bytes())  # type: ignore[arg-type]
        self._drain = Script(None, (_LUA / "drain.lua").read_bytes())  # type: ignore[arg-type]
        self._ack = Script(None, (_LUA / "ack.lua").read_bytes())  # type: ignore[arg-type]
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

    def _evalsha(self, script: Script, account_id: int, args: list[Any], keys: list[str] | None = None) -> Any:
        """EVALSHA of ``script`` on ``keys`` (default: the account's hash; all
        of the account's hash tag), sent to the account's primary."""
        self._follow_settings()
        keys = keys or [account_key(account_id)]
        return self._send(script, encode(b"EVALSHA", script.sha, len(keys), *keys, *args), account_id)

    def ping(self) -> None:
        with as_redis_errors():
            self.client().ping()

    def initialize(self) -> None:
        """Load the scripts (on every primary of a Cluster), so the first
        request pays for nothing."""
        with as_redis_errors():
            client = self.client()
            for script in (self._charge, self._generation, self._refund, self._restore, self._drain, self._ack):
                script.sha = client.script_load(script.script)

    def generation(self, account_id: int) -> str:
        """The account's generation (``lua/generation.lua``); when its hash
        is missing, the hash is first rebuilt from the ledger (:meth:`restore`).
        Raises DatabaseError (the ledger did not answer: nothing is admitted)."""
        raw = self._evalsha(self._generation, account_id, [secrets.token_hex(8)])
        if raw is None:
            return self.restore(account_id)
        return _text(raw)

    def generations(self, account_ids: list[int]) -> dict[int, str]:
        """:meth:`generation` of several accounts, in one pipeline (one per
        primary on a Cluster), and one restore per missing hash."""
        keys = [account_key(account_id) for account_id in account_ids]
        replies: list[Any] = [None] * len(keys)
        for client, indexes in self._by_node(keys):
            pipe = client.pipeline(transaction=False)
            for index in indexes:
                self._generation(keys=[keys[index]], args=[secrets.token_hex(8)], client=pipe)
            for index, raw in zip(indexes, _execute(pipe), strict=True):
                replies[index] = raw
        return {
            account_id: self.restore(account_id) if raw is None else _text(raw)
            for account_id, raw in zip(account_ids, replies, strict=True)
        }

    def _by_node(self, keys: list[str]) -> list[tuple[Redis, list[int]]]:
        """The positions of ``keys`` with a client to send them to: one group
        on a single Redis, one per primary on a Cluster (whose own pipelines
        refuse EVALSHA)."""
        cluster = self.cluster
        if cluster is None:
            return [(self.client(), list(range(len(keys))))]
        return cluster.by_node(keys)

    def restore(self, account_id: int, *, now_ms: int | None = None) -> str:
        """Rebuild a missing account hash from the ledger and return its
        generation (``lua/restore.lua``): the ledger is read first, then the
        hash is created with those counts unless another process created it
        meanwhile. Raises DatabaseError."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        state = restore_state(account_id=account_id, now_ms=now_ms)
        raw = self._evalsha(
            self._restore,
            account_id,
            restore_args(state, secrets.token_hex(8), now_ms),
            keys=[account_key(account_id), usage_key(account_id), batch_key(account_id)],
        )
        generation, created = _text(raw[0]), raw[1]
        if created and (state.day_units or state.month_units or state.rates):
            log.warning(
                "Counters of account %s restored from the ledger: %s units today, %s this month, %s rate limit(s)",
                account_id,
                state.day_units,
                state.month_units,
                len(state.rates),
            )
        return generation

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
        quota window that is still current, if the counters are still those
        it was reserved in; the ledger gets it through the next flush.

        Fenced: when the counters were lost since (the hash is missing, or
        was created after ``at``), they hold units used since and nothing is
        subtracted from them. The ledger then gets the refund only if it
        holds the reservation (a batch of the old counters was drained after
        ``at``); otherwise the reservation was lost with them and there is
        nothing to give back. Raises DatabaseError and redis-py's errors."""
        at_ms = int(at * 1000)
        args: list[Any] = [units, at_ms, at_ms // DAY_MS, HASH_TTL_MS]
        for window, field in QUOTA_FIELDS.items():
            args += (field, window_at(window, at_ms).id)
        changed, created = self._evalsha(
            self._refund, account_id, args, keys=[account_key(account_id), usage_key(account_id)]
        )
        if changed >= 0:
            return
        fence_refund(account_id=account_id, units=units, at_ms=at_ms, created_ms=int(created) if created else None)

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

    def _primaries(self) -> list[Redis]:
        """A client of each primary: the one Redis, or a Cluster's primaries."""
        cluster = self.cluster
        if cluster is None:
            return [self.client()]
        with as_redis_errors():
            return [cluster.client.get_redis_connection(node) for node in cluster.client.get_primaries()]

    def drain(self) -> list[Batch]:
        """Every account's usage not yet in the ledger, as batches
        (``lua/drain.lua``): one SCAN pass over the usage and batch hashes
        (of every primary on a Cluster), then one pipeline per
        ``DRAIN_CHUNK`` accounts (per primary). A batch stays in Redis until
        :meth:`ack`."""
        pattern = re.compile(rf"^{re.escape(_key_prefix())}\{{a(\d+)\}}:[ub]$")
        accounts: set[int] = set()
        match = f"{_key_prefix()}{{a*}}:[ub]"
        with as_redis_errors():
            for primary in self._primaries():
                for name in primary.scan_iter(match=match, count=1000):
                    found = pattern.match(_text(name))
                    if found:
                        accounts.add(int(found.group(1)))
        batches: list[Batch] = []
        ordered = sorted(accounts)
        for start in range(0, len(ordered), DRAIN_CHUNK):
            chunk = ordered[start : start + DRAIN_CHUNK]
            for client, indexes in self._by_node([usage_key(account_id) for account_id in chunk]):
                pipe = client.pipeline(transaction=False)
                for index in indexes:
                    keys = [usage_key(chunk[index]), batch_key(chunk[index])]
                    self._drain(keys=keys, args=[secrets.token_hex(16)], client=pipe)
                for index, flat in zip(indexes, _execute(pipe), strict=True):
                    if flat:
                        fields = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
                        batches.append(Batch.from_fields(chunk[index], fields))
        return batches

    def ack(self, batches: list[Batch]) -> None:
        """Forget these batches in Redis (the ledger holds them)."""
        for client, indexes in self._by_node([batch_key(batch.account_id) for batch in batches]):
            pipe = client.pipeline(transaction=False)
            for index in indexes:
                batch = batches[index]
                self._ack(keys=[batch_key(batch.account_id)], args=[batch.token], client=pipe)
            _execute(pipe)

    def epoch(self, fresh: str) -> tuple[str, str]:
        """The token that names this life of the Redis data, set to ``fresh``
        if there is none (a new or emptied Redis), and the server's run id.

        On a Cluster, every primary keeps a token of its own (a key in one of
        its slots, :meth:`ClusterCounters.key_per_primary`) and the token
        returned is a digest of them all: a primary that lost its data alone
        changes it. The run id is a digest of the primaries' run ids."""
        cluster = self.cluster
        key = f"{_key_prefix()}epoch"
        if cluster is None:
            client = self.client()
            with as_redis_errors():
                client.set(key, fresh, nx=True, px=HASH_TTL_MS)
                token = client.get(key)
                client.pexpire(key, HASH_TTL_MS)
                run_id = str(client.info("server").get("run_id", ""))
            return _text(token), run_id
        tokens, run_ids = [], []
        with as_redis_errors():
            for primary, node_key in cluster.key_per_primary(key):
                pipe = primary.pipeline(transaction=False)
                pipe.set(node_key, fresh, nx=True, px=HASH_TTL_MS)
                pipe.get(node_key)
                pipe.pexpire(node_key, HASH_TTL_MS)
                tokens.append(f"{node_key}={_text(pipe.execute()[1])}")
                run_ids.append(str(primary.info("server").get("run_id", "")))
        # Digests that fit CounterEpoch's columns (32 and 40 hex digits).
        token = hashlib.blake2b(",".join(sorted(tokens)).encode(), digest_size=16).hexdigest()
        return token, hashlib.blake2b(",".join(sorted(run_ids)).encode(), digest_size=20).hexdigest()

    def durability(self) -> dict[str, Any]:
        """What Redis keeps through a restart and under memory pressure:
        ``aof`` and ``rdb`` (None: unknown, CONFIG is disabled on many
        managed services) and ``maxmemory_policy`` (from INFO, always).
        On a Cluster, what its least durable primary keeps: ``aof`` and
        ``rdb`` both False if any primary keeps nothing on disk, and the
        first policy that is not ``noeviction``, if any."""
        nodes, policies = list[tuple[bool, bool | None]](), list[Any]()
        with as_redis_errors():
            for client in self._primaries():
                info = client.info("persistence") | client.info("memory")
                try:
                    rdb: bool | None = bool(client.config_get("save").get("save"))
                except ResponseError:
                    rdb = None
                nodes.append((bool(info.get("aof_enabled")), rdb))
                policies.append(info.get("maxmemory_policy"))
        policy = next((p for p in policies if p != "noeviction"), policies[0] if policies else None)
        if (False, False) in nodes:
            return {"aof": False, "rdb": False, "maxmemory_policy": policy}
        # Every primary keeps something (or may): RDB as seen on those without AOF.
        rdbs = [rdb for aof, rdb in nodes if not aof] or [rdb for _, rdb in nodes]
        rdb_all = None if None in rdbs else all(rdbs)
        return {"aof": all(aof for aof, _ in nodes), "rdb": rdb_all, "maxmemory_policy": policy}

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


def restore_args(state: Restored, generation: str, now_ms: int) -> list[Any]:
    """``lua/restore.lua``'s ARGV for ``state``."""
    day, month = window_at("day", now_ms), window_at("month", now_ms)
    args: list[Any] = [generation, now_ms, HASH_TTL_MS, now_ms // DAY_MS, month.start_ms // DAY_MS]
    args += (day.id, state.day_units, month.id, state.month_units)
    for field, value in state.rates.items():
        args += (field, value)
    return args


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
