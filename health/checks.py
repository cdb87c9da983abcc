"""Health checks: small dataclasses with ``run()``, listed where the view is
set up (health.views).

The counters and the queue share one Redis (one configuration, project.redis),
so once a check finds it unreachable the other Redis checks report the same
without trying again: a hung Redis costs the whole report one timeout (about
half a second: 0.25 s and one retry), not one per check. (Running the checks
in threads does not help: redis-py connects under the pool's lock.)

A check returns its facts or raises :class:`Unavailable` with a message that is
safe to show. Any other exception is logged and shown as a generic error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import RedisError

from quotas.backends import get_backend
from validation.queue import get_queue_service

log = logging.getLogger("tollgate.health")


class Unavailable(Exception):
    """The dependency does not answer; ``str()`` is safe to show."""


class Check(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def backend(self) -> str: ...

    def run(self) -> dict[str, Any]: ...


@dataclass
class CounterBackendCheck:
    """The rate-limit counters answer (PING)."""

    name: str = "counter_backend"

    @property
    def backend(self) -> str:
        return get_backend().name

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

    def run(self) -> dict[str, Any]:
        try:
            depth = get_queue_service().depth()
        except (RedisError, OSError) as exc:
            raise Unavailable(type(exc).__name__) from None
        return {"status": "connected", "backend": self.backend, "queue_depth": depth}


@dataclass
class RedisServerCheck:
    """Facts about the Redis server (admin report only)."""

    name: str = "redis_server"

    @property
    def backend(self) -> str:
        return get_backend().name

    def run(self) -> dict[str, Any]:
        try:
            return {"status": "connected", **get_backend().server_info()}
        except (RedisError, OSError) as exc:
            raise Unavailable(type(exc).__name__) from None


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
    redis_down: dict[str, Any] | None = None
    for check in checks:
        if redis_down is not None and check.backend == "redis":
            result = {**redis_down, "backend": check.backend}
            if isinstance(check, QueueCheck):
                result["queue_depth"] = None
        else:
            result = _run_one(check)
            if result["status"] == "disconnected" and check.backend == "redis":
                redis_down = {key: result[key] for key in ("status", "error")}
        results[check.name] = result
    return results
