"""What a run measured, per load and variant, and the medians and ratios
derived from it. Ratios and differences pair each variant's run with the
unmetered run of the same load and round (measured seconds apart), then take
the median over rounds."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.ratelimit.phases import Accounting, Exactness, Timed
from bench.ratelimit.redis_stats import Sample

BASELINE = "unmetered"
HOT, MANY = "hot", "many"


@dataclass
class VariantRun:
    """One variant under one load. The rejected phase, the burst and the
    MONITOR samples use the burst key whatever the load: they are kept on
    the hot load's runs."""

    name: str
    loaded: list[Timed] = field(default_factory=list)  # one per round, `connections` connections
    single: list[Timed] = field(default_factory=list)  # one per round, one connection (hot load)
    admitted: Accounting | None = None
    rejected: Accounting | None = None
    exactness: Exactness | None = None
    samples: dict[str, tuple[Sample, int]] = field(default_factory=dict)  # "admitted"/"rejected"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class LoadRun:
    """Every variant under one load."""

    load: str
    variants: dict[str, VariantRun]

    def per_round(self, name: str, phase: str, metric: Callable[[Timed], float]) -> list[float]:
        return [metric(timed) for timed in getattr(self.variants[name], phase)]

    def rps(self, name: str) -> float:
        return median(self.per_round(name, "loaded", lambda t: t.load.rps))

    def ratios(self, name: str) -> list[float]:
        """This variant's req/s over the unmetered req/s of the same round."""
        mine = self.per_round(name, "loaded", lambda t: t.load.rps)
        base = self.per_round(BASELINE, "loaded", lambda t: t.load.rps)
        return [m / b for m, b in zip(mine, base, strict=False) if b]

    def percentile(self, name: str, phase: str, which: str) -> float:
        return median(self.per_round(name, phase, lambda t: getattr(t.load, which)))

    def added_p50(self, name: str, phase: str) -> float:
        """Median over rounds of (this p50 - unmetered p50), in ms."""
        mine = self.per_round(name, phase, lambda t: t.load.p50_ms)
        base = self.per_round(BASELINE, phase, lambda t: t.load.p50_ms)
        return median([m - b for m, b in zip(mine, base, strict=False)])

    def cpu_us(self, name: str, part: str) -> float:
        """Median CPU microseconds per request of ``part`` ("app", "redis") under load."""
        return median(self.per_round(name, "loaded", lambda t: t.cpu_us(part)))

    def added_cpu_us(self, name: str, parts: tuple[str, ...] = ("app", "redis")) -> float:
        """Median over rounds of this variant's CPU per request minus the
        unmetered one's (``parts``: "app", the gunicorn processes, and/or
        "redis")."""

        def total(t: Timed) -> float:
            return sum(t.cpu_us(part) for part in parts)

        mine = self.per_round(name, "loaded", total)
        base = self.per_round(BASELINE, "loaded", total)
        return median([m - b for m, b in zip(mine, base, strict=False)])

    def cpu_ratios(self, name: str) -> list[float]:
        """Unmetered CPU per request over this variant's, per round (app + Redis):
        the throughput ratio a CPU-bound server would show, whatever else runs."""

        def total(t: Timed) -> float:
            return t.cpu_us("app") + t.cpu_us("redis")

        mine = self.per_round(name, "loaded", total)
        base = self.per_round(BASELINE, "loaded", total)
        return [b / m for m, b in zip(mine, base, strict=False) if m]

    def loaded_round_trips(self, name: str) -> float:
        """Cross-check of the exact counts: reads per wrk-counted request under load."""
        return median(self.per_round(name, "loaded", lambda t: t.counts.reads / max(t.load.requests, 1)))

    def rejected_under_load(self, name: str) -> int:
        return sum(t.load.failed + t.load.socket_errors for t in self.variants[name].loaded)


@dataclass
class Run:
    loads: dict[str, LoadRun]
    settings: dict[str, object]
