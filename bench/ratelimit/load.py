"""Load generation: wrk for throughput and latency, a small asyncio client
for everything that needs an exact request count or true concurrency.

- ``run_wrk``: closed loop, ``connections`` connections for ``seconds``
  seconds, one wrk thread (the machine has two cores; the server needs them).
  Latency is wrk's, from writing a request to reading its response. With a
  keys file, every request carries the next key of the file, in rotation
  (``wrk_keys.lua``).
- ``exact``: exactly ``total`` requests, ``concurrency`` at a time, the keys
  in rotation; every response is read, so the server has finished all of
  them on return.
- ``burst``: ``total`` connections opened first, then every request written at
  once, then every response read: as concurrent as a client can make it.
- ``closed_loop``: the fallback when wrk is missing. It is Python on the same
  two cores as the server, so its absolute numbers are lower and noisier than
  wrk's; ratios between variants measured with it remain comparable.

Every request opens its own connection: gunicorn's sync workers close the
connection after each response, whichever client is used.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

WRK_SCRIPT = Path(__file__).with_name("wrk_report.lua")
WRK_KEYS_SCRIPT = Path(__file__).with_name("wrk_keys.lua")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class LoadResult:
    """One timed run: responses, errors and latency percentiles."""

    requests: int
    seconds: float
    failed: int  # responses with status >= 400 (all of them in a rejected run)
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def find_wrk(install: bool) -> str | None:
    """The wrk binary; with ``install``, as root, apt-get installs it first
    (Debian package ``wrk``), as a CI script would."""
    found = shutil.which("wrk")
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("wrk not found; installing the Debian package wrk with apt-get ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False, capture_output=True, timeout=300)
    return shutil.which("wrk")


def run_wrk(
    wrk: str, port: int, path: str, keys: list[str], *, connections: int, seconds: int, keys_file: Path | None = None
) -> LoadResult:
    """One key: a fixed header; several: ``keys_file`` holds them, one a line."""
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    if len(keys) == 1:
        command += ["-s", str(WRK_SCRIPT), "-H", f"Authorization: Bearer {keys[0]}", f"http://{HOST}:{port}{path}"]
    else:
        if keys_file is None:
            raise ValueError("several keys need a keys file")
        command += ["-s", str(WRK_KEYS_SCRIPT), f"http://{HOST}:{port}{path}", "--", str(keys_file)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    line = next((line for line in result.stdout.splitlines() if line.startswith("BENCH-JSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    data = json.loads(line.removeprefix("BENCH-JSON "))
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        failed=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


def _request(port: int, path: str, key: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    ).encode()


def _status(response: bytes) -> int:
    # "HTTP/1.1 200 OK": the status is the second word; 0 for no answer.
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


async def _fetch(port: int, payload: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(payload)
        response = await reader.read()  # the server closes after answering
    finally:
        writer.close()
    return _status(response), time.perf_counter() - started


async def _exact(port: int, payloads: list[bytes], total: int, concurrency: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                status, _ = await _fetch(port, payloads[remaining % len(payloads)])
            except OSError:
                status = 0
            statuses[status] += 1

    await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))
    return statuses


def exact(port: int, path: str, keys: list[str], *, total: int, concurrency: int) -> Counter[int]:
    """Send exactly ``total`` requests, the keys in rotation; returns how many
    got each status (0: no answer)."""
    return asyncio.run(_exact(port, [_request(port, path, key) for key in keys], total, concurrency))


async def _burst(port: int, payload: bytes, total: int) -> tuple[Counter[int], float]:
    connections = await asyncio.gather(*(asyncio.open_connection(HOST, port) for _ in range(total)))
    started = time.perf_counter()
    for _, writer in connections:
        writer.write(payload)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        try:
            return _status(await reader.read())
        except OSError:
            return 0
        finally:
            writer.close()

    statuses = Counter(await asyncio.gather(*(answer(reader, writer) for reader, writer in connections)))
    return statuses, time.perf_counter() - started


def burst(port: int, path: str, key: str, *, total: int) -> tuple[Counter[int], float]:
    """``total`` concurrent requests; returns the statuses and the seconds from
    the first request written to the last response read."""
    return asyncio.run(_burst(port, _request(port, path, key), total))


async def _closed_loop(port: int, payloads: list[bytes], connections: int, seconds: float) -> LoadResult:
    latencies: list[float] = []
    failed = errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal failed, errors
        while time.perf_counter() < deadline:
            try:
                status, elapsed = await _fetch(port, payloads[len(latencies) % len(payloads)])
            except OSError:
                errors += 1
                continue
            latencies.append(elapsed)
            failed += status >= 400

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return LoadResult(len(latencies), elapsed, failed, errors, cuts[49] * 1000, cuts[98] * 1000)


def closed_loop(port: int, path: str, keys: list[str], *, connections: int, seconds: int) -> LoadResult:
    """The Python fallback for ``run_wrk`` (see the module docstring)."""
    return asyncio.run(_closed_loop(port, [_request(port, path, key) for key in keys], connections, seconds))
