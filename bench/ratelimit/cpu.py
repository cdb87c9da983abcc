"""CPU time spent by a variant's processes: its gunicorn workers and its
redis-server, from the kernel's per-thread run-time counters.

On a 2-core machine the throughput of a saturated server is about
cores / CPU per request, so CPU per request is a second, less noise-prone
view of the same cost: another tenant's load lowers everyone's req/s, but
changes much less how many CPU microseconds one request takes.

``/proc/<pid>/task/<tid>/schedstat`` gives nanoseconds on the CPU; where the
kernel lacks it, ``/proc/<pid>/task/<tid>/stat`` gives utime + stime in
clock ticks (coarser, still fine over seconds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def _thread_ns(task: Path) -> float:
    try:
        return float((task / "schedstat").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        pass
    try:
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * _TICK_NS
    except (OSError, IndexError, ValueError):
        return 0.0  # the process just exited


def process_ns(pid: int) -> float:
    """CPU nanoseconds used so far by every thread of ``pid``."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    return sum(_thread_ns(task) for task in tasks)


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers, for its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class CpuTime:
    """CPU seconds of a variant's app (gunicorn master and workers) and Redis."""

    app: float
    redis: float

    def __sub__(self, other: CpuTime) -> CpuTime:
        return CpuTime(self.app - other.app, self.redis - other.redis)


def app_pids(gunicorn_pid: int) -> list[int]:
    """gunicorn's master and its workers; taken once per measurement, so
    both samples of it cover the same processes."""
    return [gunicorn_pid, *children(gunicorn_pid)]


def sample(app: list[int], redis_pid: int) -> CpuTime:
    return CpuTime(sum(process_ns(pid) for pid in app) / 1e9, process_ns(redis_pid) / 1e9)
