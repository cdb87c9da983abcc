"""The service's own Prometheus instruments, recorded where things happen.

Metrics are on when ``METRICS_TOKEN`` is set (``/metrics`` needs it as a
bearer token, see ``health.metrics``); off, every function here returns at
once and records nothing.

Across gunicorn's worker processes the values are prometheus_client's
multiprocess files: ``project.serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a
fresh directory per start) before anything imports prometheus_client, every
worker writes its own file, the scrape sums them all, and a worker that
exits keeps its counts (gunicorn's ``child_exit`` hook marks it dead; nothing
resets unseen). A process started without that variable (runserver, tests in
one process) keeps the values in memory.

Labels are bounded: ``route`` is the URL pattern (``api/v1/jobs/<str:job_id>``,
never the path), ``status`` the HTTP status, ``outcome`` one of
:data:`OUTCOMES`, ``component`` one of a fixed few. No key, account or path is
ever a label.
"""

from __future__ import annotations

import os
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
    """Whether metrics are on, per process: ``METRICS_TOKEN`` read on first
    use and again when a test changes it. The labelled children are kept by
    label values, so a request costs a dictionary lookup, not a label
    validation."""

    def __init__(self) -> None:
        self._on: bool | None = None
        self._requests: dict[tuple[str, str, int, str], Any] = {}
        self._latency: dict[str, Any] = {}
        setting_changed.connect(self._setting_changed, weak=True)

    def _setting_changed(self, setting: str, **kwargs: Any) -> None:
        if setting == "METRICS_TOKEN":
            self._on = None

    @property
    def on(self) -> bool:
        if self._on is None:
            self._on = bool(getattr(settings, "METRICS_TOKEN", ""))
        return self._on

    def request(self, route: str, method: str, status: int, outcome: str, seconds: float) -> None:
        key = (route, method, status, outcome)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = REQUESTS.labels(route, method, str(status), outcome)
        counter.inc()
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = REQUEST_SECONDS.labels(route)
        latency.observe(seconds)


recorder = Recorder()


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


def record_request(route: str, method: str, status: int, outcome: str, seconds: float) -> None:
    if recorder.on:
        recorder.request(route, method, status, outcome, seconds)


def record_limiter_round_trip(seconds: float) -> None:
    if recorder.on:
        LIMITER_SECONDS.observe(seconds)


def count_redis_error(component: str) -> None:
    """``component``: ``limiter`` (a charge or key check) or ``api`` (a view)."""
    if recorder.on:
        REDIS_ERRORS.labels(component).inc()


def count_database_error() -> None:
    if recorder.on:
        DATABASE_ERRORS.inc()
