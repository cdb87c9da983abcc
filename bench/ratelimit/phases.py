"""The measurements of one run, each on one variant's gunicorn and Redis, for
one load (a list of keys in rotation: one hot key, or many).

- ``account``: exactly N requests after a warm-up, between a counter reset and
  a read: round trips and commands per request with nothing estimated.
- ``timed``: a wrk run (or the Python fallback), with the CPU time of the
  variant's processes and the Redis counters read around it (the latter only
  as a cross-check: wrk does not count the requests in flight at its stop, so
  those figures may be high by up to connections/N).
- ``exactness``: a burst on the fresh burst key (limit 100/h).
- ``sample``: a short MONITOR recording of what each request sends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.ratelimit import cpu, load
from bench.ratelimit.plans import PEER_LIMITS
from bench.ratelimit.redis_stats import Counts, Probe, Sample, audit
from bench.ratelimit.stack import Server


@dataclass(frozen=True)
class Load:
    """What the requests of a measurement carry: ``keys`` in rotation (wrk
    reads them from ``keys_file`` when there are several)."""

    name: str
    keys: list[str]
    keys_file: Path | None = None


# The burst key's limit (100 per hour, plans.py): GCRA also lets one more
# through for every 36 s the burst lasts (bursts here last about a second).
BURST_LIMIT, BURST_PERIOD = PEER_LIMITS["burst"]
BURST_EMISSION_SECONDS = BURST_PERIOD / BURST_LIMIT
# Requests sent before any counter reset: loads each worker's key record,
# opens its Redis connection and refreshes any connection idle long enough
# for redis-py's health-check PING, so none of that lands in a measurement.
WARM_REQUESTS = 100


@dataclass(frozen=True)
class Accounting:
    """What N requests cost in Redis, counted by the server."""

    requests: int
    statuses: dict[int, int]
    counts: Counts

    def per_request(self, value: int) -> float:
        return value / self.requests

    @property
    def round_trips(self) -> float:
        return self.per_request(self.counts.reads)

    @property
    def commands(self) -> float:
        return self.per_request(self.counts.commands)

    @property
    def evalsha(self) -> float:
        return self.per_request(self.counts.calls.get("EVALSHA", 0))


@dataclass(frozen=True)
class Timed:
    """A timed run, with the Redis counters and the CPU time around it."""

    load: load.LoadResult
    counts: Counts
    cpu: cpu.CpuTime

    def cpu_us(self, part: str) -> float:
        """CPU microseconds per request of ``part`` ("app" or "redis")."""
        return getattr(self.cpu, part) / max(self.load.requests, 1) * 1e6


@dataclass(frozen=True)
class Exactness:
    requests: int
    statuses: dict[int, int]
    seconds: float

    @property
    def admitted(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def gcra_allowance(self) -> int:
        """What GCRA may admit: the burst, plus one per emission interval elapsed."""
        return BURST_LIMIT + int(self.seconds // BURST_EMISSION_SECONDS)


class Phases:
    def __init__(self, wrk: str | None, concurrency: int) -> None:
        self.wrk = wrk
        self.concurrency = concurrency

    def warm(self, server: Server, path: str, keys: Load, total: int = WARM_REQUESTS) -> None:
        load.exact(server.port, path, keys.keys, total=total, concurrency=self.concurrency)

    def account(self, server: Server, probe: Probe, path: str, keys: Load, total: int) -> Accounting:
        self.warm(server, path, keys)
        probe.reset()
        statuses = load.exact(server.port, path, keys.keys, total=total, concurrency=self.concurrency)
        counts = probe.read()
        return Accounting(total, dict(statuses), counts)

    def timed(self, server: Server, probe: Probe, path: str, keys: Load, *, connections: int, seconds: int) -> Timed:
        self.warm(server, path, keys)
        if server.process is None:
            raise RuntimeError(f"{server.variant.name} is not running")
        pids = cpu.app_pids(server.process.pid)
        redis_pid = server.redis.process.pid if server.redis.process else 0
        probe.reset()
        before = cpu.sample(pids, redis_pid)
        result = self._load(server, path, keys, connections, seconds)
        used = cpu.sample(pids, redis_pid) - before
        time.sleep(0.05)  # let the requests wrk abandoned at its stop finish
        return Timed(result, probe.read(), used)

    def _load(self, server: Server, path: str, keys: Load, connections: int, seconds: int) -> load.LoadResult:
        if self.wrk:
            return load.run_wrk(
                self.wrk,
                server.port,
                path,
                keys.keys,
                connections=connections,
                seconds=seconds,
                keys_file=keys.keys_file,
            )
        return load.closed_loop(server.port, path, keys.keys, connections=connections, seconds=seconds)

    def exactness(self, server: Server, path: str, key: str, total: int) -> Exactness:
        statuses, seconds = load.burst(server.port, path, key, total=total)
        return Exactness(total, dict(statuses), seconds)

    def sample(self, server: Server, path: str, keys: Load, total: int) -> tuple[Sample, int]:
        """MONITOR ``total`` sequential requests; returns the sample and the
        number of requests it covers."""
        self.warm(server, path, keys, total=20)
        sample = audit(
            server.redis.client, lambda: load.exact(server.port, path, keys.keys, total=total, concurrency=1)
        )
        return sample, total
