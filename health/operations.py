"""The operations page's data: one :class:`Snapshot` of queues, workers,
Redis, usage and failed jobs, served as HTML and as JSON.

Contract: :func:`take_snapshot` never raises for Redis trouble and returns
within about ``REDIS_DEADLINE`` seconds of its database reads, however Redis
fails (refused, hung, slow):

- the database is read first, in the calling thread (a test's transaction
  and the request's connection are only visible there), and needs no Redis;
- the Redis reads are independent, so they run concurrently, each failing on
  the shared client's short timeouts; whatever has not answered by the
  deadline is abandoned and reported as timed out;
- a part that fails leaves its figures empty, and the page says "Redis
  unreachable" instead of answering 500.

Nothing here writes to Redis (see ``health.rq_stats``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from health import failed_jobs, rq_stats, usage
from health.checks import role_facts
from project.redis import CONNECT_TIMEOUT, SOCKET_TIMEOUT
from quotas.backends import get_backend
from quotas.ledger import ledger_status
from quotas.traffic import Traffic
from validation.queue import get_queue_service

log = logging.getLogger("tollgate.health")

# The longest the page waits for Redis in all. The shared client gives up on a
# refused connection at once and on a hung one after 0.25 s (one retry: about
# 0.5 s, up to 1 s when the reconnect hangs too); past this the page is drawn
# without the parts that did not answer.
REDIS_DEADLINE = 0.8
# Connection facts that may be shown; anything else (password, TLS key
# material, redis-py internals) never leaves the pool.
DISPLAYABLE_CONNECTION_KWARGS = (
    "host",
    "port",
    "db",
    "username",
    "path",
    "socket_timeout",
    "socket_connect_timeout",
    "health_check_interval",
)


# The reads of the counters' Redis (the others, "rq", read the queue's).
COUNTER_READS = ("usage", "traffic", "server")


@dataclass(slots=True)
class Part:
    """The outcome of one Redis read: ``value``, or ``error`` (safe to show)
    and whether it was Redis that failed."""

    value: Any = None
    error: str | None = None
    redis_down: bool = False
    reason: str | None = None  # why Redis failed: an exception's name, or a timeout


@dataclass(slots=True)
class Snapshot:
    generated_at: datetime
    demo_mode: bool
    environment: str
    redis: dict[str, Any]
    rq: rq_stats.RqStats | None
    rq_error: str | None
    accounts: list[usage.AccountUsage]
    total_accounts: int
    usage_error: str | None
    top_keys: list[usage.KeyUsage] | None
    per_minute: list[tuple[int, int]] | None
    jobs: failed_jobs.JobsReport

    @property
    def redis_unreachable(self) -> bool:
        return not self.demo_mode and not self.redis["connected"]

    @property
    def queue_redis_unreachable(self) -> bool:
        """The queue's own Redis is down while the counters' answers."""
        queue = self.redis.get("queue") or {}
        return not self.demo_mode and self.redis["connected"] and not queue.get("connected", True)

    @property
    def waiting(self) -> int:
        """Jobs waiting for a worker: the job table's queued and running
        rows (the truth), or RQ's queue when it holds more (jobs that are no
        validation job)."""
        return max(self.jobs.waiting, self.rq.waiting if self.rq else 0)

    @property
    def oldest_queued_age(self) -> float | None:
        """Seconds the oldest queued job (job table) has waited."""
        oldest = self.jobs.oldest_queued_at
        return None if oldest is None else max(0.0, (self.generated_at - oldest).total_seconds())

    @property
    def no_worker_while_jobs_wait(self) -> bool:
        """Jobs wait and no worker is alive (known only while Redis answers;
        DEMO_MODE runs jobs in the web process)."""
        return not self.demo_mode and self.rq is not None and self.waiting > 0 and self.rq.alive_workers == 0


def connection_facts() -> dict[str, Any]:
    """The allowlisted connection settings of the counters' pool (the seed
    nodes' on a Cluster), no I/O."""
    from django_redis import get_redis_connection

    cluster = getattr(get_backend(), "cluster", None)
    if cluster is not None:
        kwargs = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}
    else:
        kwargs = get_redis_connection("default").connection_pool.connection_kwargs
    facts = {name: kwargs[name] for name in DISPLAYABLE_CONNECTION_KWARGS if kwargs.get(name) is not None}
    facts["tls"] = role_facts("counters")["tls"]
    return facts


def _run(read: Callable[[], Any]) -> Part:
    try:
        return Part(value=read())
    except (RedisError, OSError) as exc:
        reason = type(exc).__name__
        return Part(error=f"Redis unreachable ({reason})", redis_down=True, reason=reason)
    except Exception:  # a bug in one part must not turn the page into a 500
        log.exception("Operations page: a Redis read failed unexpectedly")
        return Part(error="unexpected error (see logs)")


def gather(reads: dict[str, Callable[[], Any]], deadline: float) -> dict[str, Part]:
    """Run ``reads`` concurrently; a read still running after ``deadline``
    seconds is abandoned (its thread finishes on its own, bounded by the
    client's timeouts) and reported as timed out."""
    if not reads:
        return {}
    pool = ThreadPoolExecutor(max_workers=len(reads), thread_name_prefix="operations")
    futures: dict[str, Future[Part]] = {name: pool.submit(_run, read) for name, read in reads.items()}
    wait(futures.values(), timeout=deadline)
    pool.shutdown(wait=False, cancel_futures=True)
    parts = {}
    for name, future in futures.items():
        if future.done() and not future.cancelled():
            parts[name] = future.result()
        else:
            reason = f"no answer within {deadline:g} s"
            parts[name] = Part(error=f"Redis unreachable ({reason})", redis_down=True, reason=reason)
    return parts


def take_snapshot(*, now: float | None = None) -> Snapshot:
    """Everything the operations page shows, as of ``now`` (epoch seconds)."""
    now = time.time() if now is None else now
    moment = datetime.fromtimestamp(now, tz=UTC)
    demo = bool(settings.DEMO_MODE)
    directory = usage.read_directory()
    jobs = failed_jobs.read_jobs()
    backend = get_backend()
    ids = [account.pk for account in directory.accounts]
    reads: dict[str, Callable[[], Any]] = {
        "usage": lambda: backend.usage(ids, now=now),
        "traffic": lambda: backend.traffic(directory.keys_by_account, now=now),
    }
    if not demo:
        reads["server"] = backend.server_info
        reads["rq"] = lambda: rq_stats.read_all(moment)
    # The in-memory backends of DEMO_MODE cannot hang: no deadline needed,
    # but the same code path keeps the page identical.
    parts = gather(reads, REDIS_DEADLINE)

    redis: dict[str, Any] = {"connected": demo, "backend": backend.name}
    rq: rq_stats.RqStats | None = None
    rq_error = None
    if demo:
        depth = get_queue_service().depth()
        rq = rq_stats.RqStats(queues=[rq_stats.QueueStats("memory (DEMO_MODE)", 0, depth, 0, 0, 0, 0, 0, None)])
    else:
        server = parts["server"]
        queue = role_facts("queue")
        # The queue's reads (rq) fail with the counters' only when they share a Redis.
        counters_parts = parts.values() if queue["shared_with_counters"] else (parts[n] for n in COUNTER_READS)
        down = [part for part in counters_parts if part.redis_down]
        queue.update(connected=not parts["rq"].redis_down, error=parts["rq"].reason)
        redis.update(
            connected=server.error is None and not down,
            error=(down[0].reason if down else server.error),
            address=role_facts("counters")["address"],
            topology=role_facts("counters")["topology"],
            queue=queue,
            connection=connection_facts(),
            server=server.value,
        )
        rq, rq_error = parts["rq"].value, parts["rq"].error

    try:
        redis["ledger"] = ledger_status()
    except DatabaseError:
        redis["ledger"] = None
    used, traffic = parts["usage"], parts["traffic"]
    traffic_value: Traffic | None = traffic.value
    return Snapshot(
        generated_at=moment,
        demo_mode=demo,
        environment=settings.ENVIRONMENT,
        redis=redis,
        rq=rq,
        rq_error=rq_error,
        accounts=usage.account_usage(directory, used.value),
        total_accounts=directory.total_accounts,
        usage_error=used.error or traffic.error,
        top_keys=usage.top_keys(directory, traffic_value) if traffic_value is not None else None,
        per_minute=traffic_value.per_minute if traffic_value is not None else None,
        jobs=jobs,
    )
