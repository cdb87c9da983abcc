"""Real Redis topologies on loopback ports, for the Sentinel and Cluster tests.

- :class:`SentinelTopology`: a master, one replica and three Sentinels
  (``redis-server --sentinel``) that fail over half a second after the master
  stops answering;
- :class:`ClusterTopology`: three masters with ``--cluster-enabled yes``,
  joined by ``redis-cli --cluster create`` (16384 slots over three nodes).

Each belongs to the test that started it, which may kill any process; every
process is killed and every directory removed at :meth:`stop`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import redis

from tests.redis_server import RedisServer, ServerProcess, free_port, wait_until_up

# Sentinel: the master is "subjectively down" after this long without an
# answer; the Sentinels then agree (quorum 2 of 3), elect a leader and promote.
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 3000


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose Cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536 and _port_free(port + 10000):
            return port


def _until(condition, what: str, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)


class SentinelProcess(ServerProcess):
    """One Sentinel monitoring ``master`` (its config file is its own: a
    Sentinel rewrites it)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.id = uuid.uuid4().hex + uuid.uuid4().hex[:8]  # 40 hex digits, as Sentinel's own

    def configure(self, master: str, master_port: int, directory: Path, password: str | None, known: list[str]) -> None:
        """Write the config: the master, and ``known`` lines (the other
        Sentinels and the replica) so that no discovery has to be waited for."""
        self.config = directory / f"sentinel-{self.port}.conf"
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {directory}",
            f"sentinel myid {self.id}",
            f"sentinel monitor {master} 127.0.0.1 {master_port} 2",
            *known,
            f"sentinel down-after-milliseconds {master} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {master} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {master} 1",
        ]
        if password:
            lines.append(f"sentinel auth-pass {master} {password}")
        self.config.write_text("\n".join(lines) + "\n")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)

    def start(self) -> SentinelProcess:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, str(self.config), "--sentinel", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_up(self.client().ping, self.process, f"sentinel on port {self.port}", errors=(redis.RedisError,))
        return self


class SentinelTopology:
    """A master, a replica and three Sentinels, all on loopback."""

    def __init__(self, *, password: str | None = None) -> None:
        # A name of its own: django-redis keeps its pools per process.
        self.master_name = f"tg-{uuid.uuid4().hex[:8]}"
        self.password = password
        self.directory = Path(tempfile.mkdtemp(prefix="tollgate-sentinel-"))
        # No 5 s wait before a full sync (the default, to batch replicas).
        fast_sync = ("--repl-diskless-sync-delay", "0")
        self.master = RedisServer(password=password, extra=fast_sync)
        self.replica = RedisServer(
            password=password, extra=(*fast_sync, "--replicaof", "127.0.0.1", str(self.master.port))
        )
        self.sentinels: list[SentinelProcess] = []

    @property
    def nodes(self) -> str:
        """``REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def start(self) -> SentinelTopology:
        try:
            self.master.start()
            self.replica.start()
            _until(lambda: self.replica.client().info("replication")["master_link_status"] == "up", "replication")
            self.sentinels = [SentinelProcess() for _ in range(3)]
            for sentinel in self.sentinels:
                known = [f"sentinel known-replica {self.master_name} 127.0.0.1 {self.replica.port}"]
                known += [
                    f"sentinel known-sentinel {self.master_name} 127.0.0.1 {other.port} {other.id}"
                    for other in self.sentinels
                    if other is not sentinel
                ]
                sentinel.configure(self.master_name, self.master.port, self.directory, self.password, known)
                sentinel.start()
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_until_ready(self) -> None:
        """Every Sentinel knows the replica and the two other Sentinels (told
        in its config; else their hello messages take seconds), so that a
        failover can be agreed."""

        def ready() -> bool:
            for sentinel in self.sentinels:
                state = sentinel.client().sentinel_master(self.master_name)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
            return True

        _until(ready, "Sentinel discovery")

    def master_address(self) -> tuple[str, int]:
        """The master as the first Sentinel that answers sees it."""
        for sentinel in self.sentinels:
            try:
                host, port = sentinel.client().sentinel_get_master_addr_by_name(self.master_name)
                return host, int(port)
            except (redis.RedisError, TypeError):
                continue
        raise RuntimeError("no Sentinel answers")

    def wait_for_promotion(self, old_port: int, timeout: float = 15) -> float:
        """Wait until the Sentinels name a new master and it answers as one;
        returns the monotonic time this was first seen."""
        _until(
            lambda: (
                self.master_address()[1] != old_port and self.replica.client().info("replication")["role"] == "master"
            ),
            "promotion",
            timeout,
        )
        return time.monotonic()

    def stop(self) -> None:
        for process in [*self.sentinels, self.replica, self.master]:
            process.kill()
        for server in (self.master, self.replica):
            shutil.rmtree(server.directory, ignore_errors=True)
        shutil.rmtree(self.directory, ignore_errors=True)


class ClusterTopology:
    """Three Cluster masters (no replicas) holding all 16384 slots."""

    def __init__(self, *, masters: int = 3) -> None:
        self.servers = [
            RedisServer(
                port=port,
                extra=(
                    *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
                    *("--cluster-node-timeout", "2000"),
                ),
            )
            for port in (free_cluster_port() for _ in range(masters))
        ]

    @property
    def nodes(self) -> str:
        """``REDIS_CLUSTER_NODES``."""
        return ",".join(f"127.0.0.1:{server.port}" for server in self.servers)

    def start(self) -> ClusterTopology:
        try:
            for server in self.servers:
                server.start()
            binary = shutil.which("redis-cli")
            if binary is None:
                raise RuntimeError(
                    "redis-cli is not installed (it comes with redis-server: apt-get install redis-tools)"
                )
            subprocess.run(
                [binary, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers), "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=30,
            )
            _until(lambda: all(self._state_ok(s) for s in self.servers), "cluster_state:ok")
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _state_ok(server: RedisServer) -> bool:
        info = server.client().execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.servers[0].port, socket_timeout=2)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
