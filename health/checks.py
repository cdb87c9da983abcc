"""Health checks: small dataclasses with ``run()``, listed where the view is
set up (health.views). The database check runs on a thread of its own and is
given one second; the Redis checks share the time bound below.

The counters and the queue are two Redis roles (project.redis), one Redis
unless the queue is configured apart. Once a check finds a Redis unreachable,
the other checks of the same Redis report the same without trying again: a
hung Redis costs the whole report one timeout (about half a second: 0.25 s
and one retry), not one per check; a separate queue Redis is tried on its own. (Running the checks
in threads does not help: redis-py connects under the pool's lock.)

A check returns its facts or raises :class:`Unavailable` with a message that is
safe to show. Any other exception is logged and shown as a generic error.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import django_rq
from django.conf import settings
from django.db import DatabaseError, connection
from redis.exceptions import RedisError

from health import rq_stats
from project.redis import queue_is_split, roles
from quotas.backends import get_backend
from quotas.redis_backend import server_facts
from validation.models import JobStatus, ValidationJob
from validation.queue import get_queue_service

log = logging.getLogger("tollgate.health")


class Unavailable(Exception):
    """The dependency does not answer; ``str()`` is safe to show."""


class Check(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def backend(self) -> str: ...

    @property
    def target(self) -> str | None: ...

    def run(self) -> dict[str, Any]: ...


def redis_target(role: str) -> str | None:
    """The Redis a role's checks talk to (None in DEMO_MODE): checks with
    the same target share one outcome when it is down."""
    if settings.DEMO_MODE:
        return None
    if role == "queue" and queue_is_split(settings):
        return "queue"
    return "counters"


def role_facts(role: str) -> dict[str, Any]:
    """How a role's Redis is reached (no I/O, no secrets): ``topology``
    (``url``, ``sentinel``, ``cluster``), ``address`` and ``tls``; for the
    queue, whether it is the counters' Redis."""
    counters, queue = roles(settings)
    chosen = counters if role == "counters" else queue
    facts: dict[str, Any] = {"topology": chosen.kind, "address": chosen.address(), "tls": chosen.uses_tls}
    if role == "queue":
        facts["shared_with_counters"] = not queue_is_split(settings)
    return facts


@dataclass
class CounterBackendCheck:
    """The rate-limit counters answer (PING)."""

    name: str = "counter_backend"

    @property
    def backend(self) -> str:
        return get_backend().name

    @property
    def target(self) -> str | None:
        return redis_target("counters")

    def run(self) -> dict[str, Any]:
        try:
            get_backend().ping()
        except (RedisError, OSError) as exc:
            raise Unavailable(type(exc).__name__) from None
        return {"status": "connected", "backend": self.backend}


@dataclass
class QueueCheck:
    """The job queue answers, and how many jobs wait in it."""

    name: str = "queue_service"

    @property
    def backend(self) -> str:
        return get_queue_service().name

    @property
    def target(self) -> str | None:
        return redis_target("queue")

    def run(self) -> dict[str, Any]:
        try:
            depth = get_queue_service().depth()
        except (RedisError, OSError) as exc:
            raise Unavailable(type(exc).__name__) from None
        return {"status": "connected", "backend": self.backend, "queue_depth": depth}


@dataclass
class WorkersCheck:
    """How many RQ workers are alive (heartbeat within its bound) and lost,
    and how many jobs RQ's queues hold (``health.rq_stats``, read-only)."""

    name: str = "workers"

    @property
    def backend(self) -> str:
        return get_backend().name

    @property
    def target(self) -> str | None:
        return redis_target("queue")

    def run(self) -> dict[str, Any]:
        try:
            stats = rq_stats.read_all(datetime.now(UTC))
        except (RedisError, OSError) as exc:
            raise Unavailable(type(exc).__name__) from None
        return {
            "status": "connected",
            "live": stats.alive_workers,
            "lost": stats.lost_workers,
            "rq_queued": stats.waiting,
        }


@dataclass
class RedisServerCheck:
    """Facts about the Redis server (admin report only)."""

    name: str = "redis_server"

    @property
    def backend(self) -> str:
        return get_backend().name

    @property
    def target(self) -> str | None:
        return redis_target("counters")

    def run(self) -> dict[str, Any]:
        try:
            return {"status": "connected", **get_backend().server_info()}
        except (RedisError, OSError) as exc:
            raise Unavailable(type(exc).__name__) from None


@dataclass
class QueueServerCheck:
    """Facts about the queue's own Redis server (admin report, when the
    queue is configured apart from the counters)."""

    name: str = "queue_redis_server"

    @property
    def backend(self) -> str:
        return get_queue_service().name

    @property
    def target(self) -> str | None:
        return redis_target("queue")

    def run(self) -> dict[str, Any]:
        try:
            return {"status": "connected", **server_facts(django_rq.get_connection(next(iter(settings.RQ_QUEUES))))}
        except (RedisError, OSError) as exc:
            raise Unavailable(type(exc).__name__) from None


class _DatabaseProber:
    """Runs ``SELECT 1`` on a thread of its own, one probe at a time, so that
    a caller can stop waiting for it: a hung database holds that thread up to
    its deadline (``project.postgresql``), never the health report. A probe
    opens its own connection and closes it again; after ``SELECT 1`` it
    counts the validation jobs that wait for a worker (queued or running;
    None if that read fails: the database still answered)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-database")
        self._lock = threading.Lock()
        self._running: Future[tuple[str, int | None]] | None = None

    def start(self) -> Future[tuple[str, int | None]]:
        """The probe in flight, or a new one."""
        with self._lock:
            if self._running is None or self._running.done():
                self._running = self._pool.submit(self._select_one)
            return self._running

    @staticmethod
    def _select_one() -> tuple[str, int | None]:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            try:
                waiting: int | None = ValidationJob.objects.filter(
                    status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
                ).count()
            except DatabaseError:
                waiting = None
            return connection.vendor, waiting
        finally:
            connection.close()


_prober = _DatabaseProber()


@dataclass
class DatabaseCheck:
    """The database answers ``SELECT 1`` within ``timeout`` seconds. The
    probe starts when the check is made, so it runs while the checks listed
    before it do; ``run()`` waits for what is left of the ``timeout``."""

    name: str = "database"
    timeout: float = 1.0
    probe: Future[tuple[str, int | None]] = field(init=False, repr=False)
    started: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.probe = _prober.start()

    @property
    def backend(self) -> str:
        return connection.vendor

    @property
    def target(self) -> str | None:
        return None

    def run(self) -> dict[str, Any]:
        try:
            _, waiting = self.probe.result(timeout=max(0.0, self.started + self.timeout - time.monotonic()))
        except FutureTimeout:
            raise Unavailable("timeout") from None
        except DatabaseError as exc:
            raise Unavailable(type(exc).__name__) from None
        return {"status": "connected", "backend": self.backend, "jobs_waiting": waiting}


def _run_one(check: Check) -> dict[str, Any]:
    try:
        return check.run()
    except Unavailable as exc:
        result: dict[str, Any] = {"status": "disconnected", "backend": check.backend, "error": str(exc)}
    except Exception:  # a bug in a check must not turn the health report into a 500
        log.exception("Health check %s failed unexpectedly", check.name)
        result = {"status": "error", "backend": check.backend, "error": "unexpected error (see logs)"}
    if isinstance(check, QueueCheck):
        result["queue_depth"] = None
    return result


def run_checks(checks: list[Check]) -> dict[str, dict[str, Any]]:
    """Each check's result by name. After a Redis check finds Redis
    unreachable, the remaining Redis checks are reported disconnected too."""
    results: dict[str, dict[str, Any]] = {}
    down: dict[str, dict[str, Any]] = {}
    for check in checks:
        target = check.target
        if target is not None and target in down:
            result = {**down[target], "backend": check.backend}
            if isinstance(check, QueueCheck):
                result["queue_depth"] = None
        else:
            result = _run_one(check)
            if result["status"] == "disconnected" and target is not None:
                down[target] = {key: result[key] for key in ("status", "error")}
        results[check.name] = result
    return results
