"""The service's own Prometheus instruments, recorded where things happen.

Metrics are on when ``METRICS_TOKEN`` is set (``/metrics`` needs it as a
bearer token, see ``health.metrics``); off, every function here returns at
once and records nothing.

Across gunicorn's worker processes the values are prometheus_client's
multiprocess files: ``project.serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a
fresh directory per start) before anything imports prometheus_client, every
worker writes its own file (each process's request figures about once a
second, see :class:`Recorder`), the scrape sums them all, and a worker that
exits keeps its counts (gunicorn's ``child_exit`` hook marks it dead; nothing
resets unseen). A process started without that variable (runserver, tests in
one process) keeps the values in memory.

Labels are bounded: ``route`` is the URL pattern (``api/v1/jobs/<str:job_id>``,
never the path), ``status`` the HTTP status, ``outcome`` one of
:data:`OUTCOMES`, ``component`` one of a fixed few. No key, account or path is
ever a label.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

# A PROMETHEUS_MULTIPROC_DIR set for every process of an app (Heroku's config
# vars are) must not stop one where it does not exist yet (the worker's
# dyno): prometheus_client opens its files there as the instruments below are
# made.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

# The *_created series double the scrape for no alert anyone writes.
disable_created_metrics()

# What the limiter made of a request (the ``outcome`` label):
OUTCOMES = (
    "admitted",  # metered and admitted (the view then answers what it answers)
    "rate_limited",  # 429 rate_limited
    "quota_exceeded",  # 429 quota_exceeded
    "limiter_unavailable",  # Redis down: 503 (fail mode closed) or served unmetered (open)
    "unauthenticated",  # 401: no key, or not a usable one
    "unmetered",  # not metered at all (health, admin, docs, static files)
)
_OUTCOME_OF_CODE = {
    "rate_limited": "rate_limited",
    "quota_exceeded": "quota_exceeded",
    "rate_limiter_unavailable": "limiter_unavailable",
    "missing_api_key": "unauthenticated",
    "invalid_api_key": "unauthenticated",
}

# Request latency: from a Redis-free 401 (well under a millisecond) to a
# large upload (gunicorn's timeout is 28 s).
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# One EVALSHA: a fraction of a millisecond on a private network, up to the
# 0.25 s socket timeout.
LIMITER_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

# How often a process writes its request figures into the instruments: a
# scrape sees every other process's requests up to this much later.
FLUSH_SECONDS = 1.0

# The instruments. Not in prometheus_client's global registry: /metrics
# collects them from here (one process) or from the multiprocess files.
REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "tollgate_http_requests",
    "HTTP requests answered, by URL pattern, method, status and what the limiter made of them.",
    ("route", "method", "status", "outcome"),
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "tollgate_http_request_duration_seconds",
    "Time from the first middleware to the response, by URL pattern.",
    ("route",),
    buckets=REQUEST_BUCKETS,
    registry=REGISTRY,
)
LIMITER_SECONDS = Histogram(
    "tollgate_limiter_round_trip_seconds",
    "Time of one charge round trip to Redis (requests served from a lease make none).",
    buckets=LIMITER_BUCKETS,
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "tollgate_redis_errors",
    "Redis calls of the web that failed (refused, timed out, broken), by component.",
    ("component",),
    registry=REGISTRY,
)
DATABASE_ERRORS = Counter(
    "tollgate_database_errors",
    "API answers the database could not give (down, hung, too slow): each one a 503.",
    registry=REGISTRY,
)


class Recorder:
    """This process's request figures, kept in plain numbers on the request
    path and written to the prometheus_client instruments (the multiprocess
    files under gunicorn) by a background thread every
    :data:`FLUSH_SECONDS`, before a scrape this process answers, and when the
    process exits. A request thus costs a few dictionary and list updates
    under an uncontended lock, not a dozen locked file writes; a worker killed
    outright (SIGKILL, gunicorn's timeout) loses at most its last second.

    ``on``: ``METRICS_TOKEN`` is set; read on first use, again after a test
    changes the setting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # Cumulative totals since the process started, and what was written.
        self.requests: dict[tuple[str, str, int, str], int] = {}
        self.latency: dict[str, list[float]] = {}  # route -> bucket counts (+Inf last), then the sum
        self.limiter: list[float] = [0] * (len(LIMITER_BUCKETS) + 2)
        self._written: dict[Any, list[float]] = {}
        self._pid = 0
        self._thread: threading.Thread | None = None
        setting_changed.connect(self._setting_changed, weak=True)

    def __getattr__(self, name: str) -> Any:
        if name != "on":
            raise AttributeError(name)
        self.on = bool(getattr(settings, "METRICS_TOKEN", ""))
        return self.on

    def _setting_changed(self, setting: str, **kwargs: Any) -> None:
        if setting == "METRICS_TOKEN":
            self.__dict__.pop("on", None)

    def request(self, route: str, method: str, status: int, outcome: str, seconds: float) -> None:
        key = (route, method, status, outcome)
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            row = self.latency.get(route)
            if row is None:
                row = self.latency[route] = [0] * (len(REQUEST_BUCKETS) + 2)
            row[bisect_left(REQUEST_BUCKETS, seconds)] += 1  # le: the first bound >= seconds
            row[-1] += seconds
        if self._thread is None:
            self._start()

    def limiter_round_trip(self, seconds: float) -> None:
        with self._lock:
            self.limiter[bisect_left(LIMITER_BUCKETS, seconds)] += 1
            self.limiter[-1] += seconds

    def _start(self) -> None:
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True)
        self._thread.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        """Write what was recorded since the last flush into the
        instruments. Only in the process that recorded it: a fork (the
        validation guard's child) inherits the numbers, never writes them."""
        if self._pid and os.getpid() != self._pid:
            return
        with self._flush_lock:
            with self._lock:
                requests = list(self.requests.items())
                latency = [(route, list(row)) for route, row in self.latency.items()]
                limiter = list(self.limiter)
            for key, total in requests:
                delta = total - self._written.get(key, [0])[0]
                if delta:
                    route, method, status, outcome = key
                    REQUESTS.labels(route, method, str(status), outcome).inc(delta)
                    self._written[key] = [total]
            for route, row in latency:
                self._write_histogram(("latency", route), REQUEST_SECONDS.labels(route), row)
            self._write_histogram("limiter", LIMITER_SECONDS, limiter)

    def _write_histogram(self, key: Any, histogram: Histogram, row: list[float]) -> None:
        # prometheus_client has no public way to add many observations at
        # once: its per-bucket counters (`_buckets`, +Inf last) and `_sum`,
        # as Histogram.observe itself updates them (0.26, pinned).
        written = self._written.get(key) or [0] * len(row)
        for index, (total, before) in enumerate(zip(row[:-1], written[:-1], strict=True)):
            if total != before:
                histogram._buckets[index].inc(total - before)  # type: ignore[attr-defined]
        if row[-1] != written[-1]:
            histogram._sum.inc(row[-1] - written[-1])  # type: ignore[attr-defined]
        self._written[key] = row


recorder = Recorder()


@atexit.register
def _flush_at_exit() -> None:
    # A gunicorn worker that stops (or is replaced) keeps what it counted.
    if recorder._thread is not None:
        recorder.flush()


def outcome_of(error_code: str | None, metered: bool, decided: bool) -> str:
    """The ``outcome`` label of a request: from its error code when the
    limiter refused it; else ``admitted`` if it was metered (``decided``
    False: Redis was down and the fail mode open), else ``unmetered``."""
    if error_code is not None:
        outcome = _OUTCOME_OF_CODE.get(error_code)
        if outcome is not None:
            return outcome
    if not metered:
        return "unmetered"
    return "admitted" if decided else "limiter_unavailable"


def count_redis_error(component: str) -> None:
    """``component``: ``limiter`` (a charge or key check) or ``api`` (a view)."""
    if recorder.on:
        REDIS_ERRORS.labels(component).inc()


def count_database_error() -> None:
    if recorder.on:
        DATABASE_ERRORS.inc()
