"""The counters on a Redis Cluster (``REDIS_CLUSTER_NODES``).

Everything Tollgate counts for an account is one hash, ``tg:{a<id>}``
(``quotas.redis_backend.account_key``), whose braces are a hash tag: every
script names that one key in ``KEYS``, so a call lands on the one node that
owns its slot, and nothing ever spans two slots.

The hot path keeps, per thread, one connection to each primary and picks it
by the slot of the account's key, so a charge stays one round trip. A
``MOVED`` reply (the slot now lives elsewhere: a failover, a resharding)
refreshes the slot map and the command is sent once more to the new owner
(it did not run). Everything else (the operations page's reads, the
generations of a batch of key records) is single-key commands pipelined per
node: through redis-py's ``RedisCluster``, or, for scripts (which its
pipelines refuse), one plain pipeline per primary (:meth:`ClusterCounters.by_node`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.backoff import NoBackoff
from redis.client import Redis
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from project.redis import CONNECT_TIMEOUT, HEALTH_CHECK_INTERVAL, RETRIES, SOCKET_TIMEOUT, Role


@contextmanager
def as_redis_errors() -> Iterator[None]:
    """Raise a Cluster's own failures (no node for a slot, no slot map: not
    RedisErrors) as redis-py's ConnectionError, like any "Redis is down"."""
    try:
        yield
    except RedisClusterException as exc:
        raise RedisConnectionError(f"Redis Cluster unavailable: {type(exc).__name__}") from None


# After a node failed, the slot map is read again at most this often (a
# dead node's slots move to a replica within the cluster's node timeout).
REFRESH_SECONDS = 0.25


class _Kept(threading.local):
    pid = 0
    connections: dict[str, AbstractConnection]

    def __init__(self) -> None:
        self.connections = {}


class ClusterCounters:
    """A Redis Cluster for the counters: :attr:`client` for pipelines and
    server facts, :meth:`connection` for the hot path."""

    def __init__(self, role: Role, ssl_cert_reqs: str = "required") -> None:
        self.role = role
        self._ssl_cert_reqs = ssl_cert_reqs
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()
        self._kept = _Kept()
        self._stale_since: float | None = None

    @property
    def client(self) -> RedisCluster:
        """The cluster client, connected on first use. Raises redis-py's
        ConnectionError when no seed node answers."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
                client = self._client
        return client

    def _connect(self) -> RedisCluster:
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": SOCKET_TIMEOUT,
            "health_check_interval": HEALTH_CHECK_INTERVAL,
            "retry": Retry(NoBackoff(), RETRIES),
        }
        if self.role.password:
            options["password"] = self.role.password
        if self.role.tls:
            options.update(ssl=True, ssl_cert_reqs=self._ssl_cert_reqs)
        try:
            return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in self.role.nodes], **options)
        except RedisClusterException as exc:  # not a RedisError: say "Redis is down" like the rest
            raise RedisConnectionError(f"Redis Cluster unreachable: {type(exc).__name__}") from None

    def connection(self, key: str) -> AbstractConnection:
        """This thread's connection to the primary that owns ``key``'s slot."""
        kept = self._kept
        pid = os.getpid()
        if kept.pid != pid:  # after a fork: never share the parent's sockets
            kept.connections, kept.pid = {}, pid
        if self._stale_since is not None:
            self.refresh()
        client = self.client
        try:
            node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
        except RedisClusterException as exc:  # the slot is not covered (yet)
            raise RedisConnectionError(f"Redis Cluster slot not served: {type(exc).__name__}") from None
        connection = kept.connections.get(node.name)
        if connection is None:
            redis_node = node.redis_connection or client.get_redis_connection(node)
            connection = kept.connections[node.name] = redis_node.connection_pool.get_connection()
        return connection

    def by_node(self, keys: list[str]) -> list[tuple[Redis, list[int]]]:
        """The positions of ``keys`` grouped by the primary that owns their
        slot, with a client of that primary: for pipelines that the Cluster
        client refuses (redis-py's Cluster pipelines block EVALSHA)."""
        client = self.client
        groups: dict[str, tuple[Redis, list[int]]] = {}
        with as_redis_errors():
            for index, key in enumerate(keys):
                node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
                redis_node = node.redis_connection or client.get_redis_connection(node)
                groups.setdefault(node.name, (redis_node, []))[1].append(index)
        return list(groups.values())

    def key_per_primary(self, base: str) -> list[tuple[Redis, str]]:
        """A key for each primary that serves slots, with a client of that
        primary: ``base`` and the first hash tag ``{e<n>}`` whose slot the
        primary owns (the same keys for as long as the slot map stays; a
        failover keeps them, a resharding may move one)."""
        client = self.client
        with as_redis_errors():
            primaries = {node.name: node for node in client.get_primaries()}
            found: dict[str, str] = {}
            for n in range(4 * 16384):  # a primary owning one slot is found in ~16384 tries
                if len(found) == len(primaries):
                    break
                key = f"{base}{{e{n}}}"
                node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
                found.setdefault(node.name, key)
            return [
                (node.redis_connection or client.get_redis_connection(node), found[name])
                for name, node in sorted(primaries.items())
                if name in found
            ]

    def failed(self) -> None:
        """A node did not answer: read the slot map again before the next
        call (a replica may have taken over its slots)."""
        if self._stale_since is None:
            self._stale_since = time.monotonic() - REFRESH_SECONDS

    def refresh(self) -> None:
        """Read the slot map again (at most every ``REFRESH_SECONDS`` while
        it keeps failing). Raises redis-py's ConnectionError."""
        now = time.monotonic()
        if self._stale_since is not None and now - self._stale_since < REFRESH_SECONDS:
            return
        self._stale_since = now
        try:
            self.client.nodes_manager.initialize()
        except RedisClusterException as exc:
            raise RedisConnectionError(f"Redis Cluster unreachable: {type(exc).__name__}") from None
        self._stale_since = None
        for connection in self._kept.connections.values():
            connection.disconnect()
        self._kept.connections = {}

    def server_info(self) -> dict[str, Any]:
        """Facts summed over the primaries (allowlisted by the caller)."""
        client = self.client
        primaries = client.get_primaries()
        started = time.perf_counter()
        client.ping(target_nodes=RedisCluster.PRIMARIES)
        ping_ms = (time.perf_counter() - started) * 1000
        infos = [client.get_redis_connection(node).info() for node in primaries]
        return {
            "nodes": len(primaries),
            "version": infos[0].get("redis_version") if infos else None,
            "used_memory": sum(int(info.get("used_memory", 0)) for info in infos),
            "connected_clients": sum(int(info.get("connected_clients", 0)) for info in infos),
            "uptime_seconds": min((info.get("uptime_in_seconds", 0) for info in infos), default=None),
            "aof": all(info.get("aof_enabled") for info in infos),
            "ping_ms": round(ping_ms, 3),
        }

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
