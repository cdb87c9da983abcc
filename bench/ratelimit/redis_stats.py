"""Counting what a variant asks of Redis, exactly, on the bench's own server.

- Commands: ``INFO commandstats`` (``calls`` per command). It counts every
  command the server executed, including those a Lua script runs, so EVALSHA
  is reported on its own beside the total.
- Round trips: ``total_reads_processed`` of ``INFO stats``. The server adds one
  each time it reads a client socket, and a client's round trip (one command,
  or one pipeline, written with one ``send``) is one read: a pipeline of three
  commands is one read, a script running two commands is one read.
  ``counting_check`` proves this on the server before anything is measured.
- What is *sent* (as opposed to run inside scripts): ``MONITOR`` marks script
  commands ``[lua]``; ``audit`` records a short sample with it. MONITOR slows
  the server, so it never runs while timing.

``CONFIG RESETSTAT`` zeroes both counters; the reset and the ``INFO`` that
reads them leave a constant trace (one read, one ``config|resetstat`` call),
measured on the idle server by ``Probe.calibrate`` and subtracted.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import redis


@dataclass(frozen=True)
class Counts:
    """Server counters since a reset: reads (round trips) and calls per command."""

    reads: int
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def commands(self) -> int:
        return sum(self.calls.values())

    def __sub__(self, other: Counts) -> Counts:
        names = self.calls.keys() | other.calls.keys()
        calls = {name: self.calls.get(name, 0) - other.calls.get(name, 0) for name in names}
        return Counts(self.reads - other.reads, {name: n for name, n in calls.items() if n})


class Probe:
    """Reset and read the counters of one private server."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.overhead = Counts(0)

    def reset(self) -> None:
        self.client.config_resetstat()

    def read(self) -> Counts:
        """Counters since the last reset, less the probe's own trace. One INFO."""
        info = self.client.info("stats", "commandstats")
        calls = {
            name.removeprefix("cmdstat_").upper(): int(stats["calls"])
            for name, stats in info.items()
            if name.startswith("cmdstat_")
        }
        return Counts(int(info["total_reads_processed"]), calls) - self.overhead

    def calibrate(self) -> Counts:
        """Measure the trace of a reset plus a read on the idle server."""
        self.overhead = Counts(0)
        self.reset()
        self.overhead = self.read()
        return self.overhead


def counting_check(client: redis.Redis, probe: Probe, rounds: int = 100) -> list[str]:
    """Prove on this server that reads count round trips: single commands, a
    three-command pipeline, and a script running two commands. Returns the
    lines describing the outcome; raises RuntimeError if counting is off."""
    sha = client.script_load("redis.call('SET', KEYS[1], '1'); return redis.call('GET', KEYS[1])")

    def pipeline_of_three() -> object:
        pipe = client.pipeline(transaction=False)
        for _ in range(3):
            pipe.ping()
        return pipe.execute()

    cases: list[tuple[str, Callable[[], object], int, int]] = [
        ("PING", client.ping, 1, 1),
        ("pipeline of 3 PINGs", pipeline_of_three, 1, 3),
        ("EVALSHA running SET+GET", lambda: client.evalsha(sha, 1, "bench:check"), 1, 3),
    ]
    lines = []
    for label, call, reads, commands in cases:
        probe.reset()
        for _ in range(rounds):
            call()
        counts = probe.read()
        if (counts.reads, counts.commands) != (reads * rounds, commands * rounds):
            raise RuntimeError(f"Redis counting check failed for {label}: {counts}")
        lines.append(f"{rounds} x {label} -> {counts.reads} reads, {counts.commands} commands")
    client.delete("bench:check")
    return lines


@dataclass(frozen=True)
class Sample:
    """Commands seen by MONITOR: sent by clients, and run inside scripts."""

    sent: dict[str, int]
    scripted: dict[str, int]


def audit(client_factory: Callable[[], redis.Redis], traffic: Callable[[], object]) -> Sample:
    """Record every command the server executes while ``traffic()`` runs.

    A marker ``ECHO`` sent after ``traffic`` returns ends the recording, so
    nothing is lost or cut off. The caller warms the service up first.
    """
    marker = f"bench-audit-{uuid.uuid4().hex}"
    # Connected before MONITOR starts: a new connection's handshake (HELLO,
    # CLIENT SETINFO) would otherwise be recorded.
    closer = client_factory()
    closer.ping()
    sent: Counter[str] = Counter()
    scripted: Counter[str] = Counter()
    started = threading.Event()
    failure: list[BaseException] = []

    def record() -> None:
        try:
            with client_factory().monitor() as monitor:
                started.set()
                while True:
                    entry = monitor.next_command()
                    words = entry["command"].split(" ", 1)
                    if words[0].upper() == "ECHO" and marker in entry["command"]:
                        return
                    (scripted if entry["client_type"] == "lua" else sent)[words[0].upper()] += 1
        except BaseException as exc:  # reported by the caller's thread
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    started.wait(10)
    try:
        traffic()
    finally:
        closer.echo(marker)
        thread.join(10)
    if failure:
        raise RuntimeError(f"MONITOR failed: {failure[0]!r}")
    return Sample(dict(sent), dict(scripted))
