"""Read-only statistics of the RQ queues and their workers.

Everything is read with plain Redis read commands, in two pipelined round
trips per queue: the queue length, its first job id, each registry's size and
the queue's worker set, then the first job's ``enqueued_at`` and each
worker's hash and execution index. Nothing is written, ever.

rq's own helpers are avoided on purpose:

- a registry's ``count`` (and ``len()``) runs its cleanup first, which writes
  (moves expired jobs, runs failure callbacks): that is maintenance, and this
  page only looks;
- constructing an rq ``Worker`` (which ``Worker.all()`` and
  ``Worker.find_by_key()`` do) raises the *shared* connection pool's socket
  timeout to the worker's dequeue timeout (about seven minutes), after which a
  hung Redis would hold every later request of this web process that long.

Key names still come from rq's classes, so an rq upgrade that renames a key
fails the tests instead of showing zeros.

A worker is alive while its last heartbeat is at most ``WORKER_LOST_AFTER``
of its heartbeat intervals old (the interval it registered, see
``validation.worker``): one killed with SIGKILL is shown as lost within that
bound, not when rq's own registration expires minutes later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.job import Job
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.utils import parse_composite_key, utcparse
from rq.worker import Worker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from validation.worker import HEARTBEAT_INTERVAL_FIELD, heartbeat_seconds

DEFAULT_LOST_AFTER = 3.0

# The registries shown per queue, in the page's column order.
REGISTRIES = (
    ("started", StartedJobRegistry),
    ("scheduled", ScheduledJobRegistry),
    ("deferred", DeferredJobRegistry),
    ("failed", FailedJobRegistry),
    ("finished", FinishedJobRegistry),
)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue: ``queued`` is its depth; ``oldest_age`` is how long (s) the
    job at its head has waited, None when it is empty."""

    name: str
    index: int  # position in RQ_QUEUES: django-rq's URLs use it
    queued: int
    started: int
    scheduled: int
    deferred: int
    failed: int
    finished: int
    oldest_age: float | None


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One worker as it registered itself. ``alive``: its hash still exists
    (rq lets it expire ``worker_ttl + 60`` s after the last heartbeat),
    records no death, and its last heartbeat is at most ``lost_after``
    seconds old; ``lost``: registered but silent for longer (killed, hung or
    cut off from Redis). ``state`` is rq's, or ``lost`` / ``gone``."""

    name: str
    state: str
    current_job: str | None
    last_heartbeat: datetime | None
    heartbeat_age: float | None
    queues: tuple[str, ...]
    alive: bool
    lost: bool = False
    lost_after: float | None = None


@dataclass(frozen=True, slots=True)
class RqStats:
    queues: list[QueueStats]
    workers: list[WorkerStats] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        return sum(queue.queued for queue in self.queues)

    @property
    def alive_workers(self) -> int:
        return sum(1 for worker in self.workers if worker.alive)

    @property
    def lost_workers(self) -> int:
        return sum(1 for worker in self.workers if worker.lost)

    @property
    def no_worker_while_jobs_wait(self) -> bool:
        return self.waiting > 0 and self.alive_workers == 0


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _age(stamp: str | None, now: datetime) -> tuple[datetime | None, float | None]:
    if not stamp:
        return None, None
    try:
        moment = utcparse(stamp)
    except ValueError:
        return None, None
    return moment, max(0.0, (now - moment).total_seconds())


def read_queue(name: str, index: int, now: datetime) -> tuple[QueueStats, dict[str, WorkerStats]]:
    """The statistics of queue ``name`` and of the workers listening on it.
    Raises redis-py's errors when Redis does not answer."""
    import django_rq

    queue = django_rq.get_queue(name)
    connection = queue.connection
    pipe = connection.pipeline(transaction=False)
    pipe.llen(queue.key)
    # rq appends with RPUSH and pops from the left: index 0 waited longest.
    pipe.lindex(queue.key, 0)
    for _, registry_class in REGISTRIES:
        pipe.zcard(registry_class(queue=queue).key)
    pipe.smembers(WORKERS_BY_QUEUE_KEY % name)
    queued, head, *sizes, worker_keys = pipe.execute()

    worker_names = sorted(
        key[len(Worker.redis_worker_namespace_prefix) :]
        for key in (_text(raw) or "" for raw in worker_keys)
        if key.startswith(Worker.redis_worker_namespace_prefix)
    )
    pipe = connection.pipeline(transaction=False)
    head_id = _text(head)
    if head_id:
        pipe.hget(Job.key_for(head_id), "enqueued_at")
    for worker_name in worker_names:
        pipe.hgetall(Worker.redis_worker_namespace_prefix + worker_name)
        pipe.smembers(WORKER_EXECUTIONS_KEY_TEMPLATE.format(worker_name))
    replies: list[Any] = pipe.execute() if (head_id or worker_names) else []

    oldest_age = _age(_text(replies.pop(0)), now)[1] if head_id else None
    workers = {}
    for position, worker_name in enumerate(worker_names):
        raw_hash, executions = replies[2 * position], replies[2 * position + 1]
        workers[worker_name] = _worker(worker_name, raw_hash, executions, now)
    counts = dict(zip((label for label, _ in REGISTRIES), sizes, strict=True))
    stats = QueueStats(name=name, index=index, queued=queued, oldest_age=oldest_age, **counts)
    return stats, workers


def lost_after_seconds(interval: str | None) -> float:
    """How long a worker that heartbeats every ``interval`` seconds (as it
    registered it; this process's setting when it did not) may stay silent
    before it is lost."""
    try:
        seconds = float(interval) if interval else float(heartbeat_seconds())
    except ValueError:
        seconds = float(heartbeat_seconds())
    return float(getattr(settings, "WORKER_LOST_AFTER", DEFAULT_LOST_AFTER)) * max(1.0, seconds)


def _worker(name: str, raw_hash: dict[Any, Any], executions: set[Any], now: datetime) -> WorkerStats:
    data = {_text(key): _text(value) for key, value in raw_hash.items()}
    heartbeat, heartbeat_age = _age(data.get("last_heartbeat"), now)
    current = None
    for member in sorted(_text(raw) or "" for raw in executions):
        current = parse_composite_key(member)[0]
        break
    registered = bool(data) and not data.get("death")
    bound = lost_after_seconds(data.get(HEARTBEAT_INTERVAL_FIELD))
    lost = registered and (heartbeat_age is None or heartbeat_age > bound)
    if not registered:
        state = "gone"
    elif lost:
        state = "lost"
    else:
        state = data.get("state") or "?"
    return WorkerStats(
        name=name,
        state=state,
        current_job=current,
        last_heartbeat=heartbeat,
        heartbeat_age=heartbeat_age,
        queues=tuple(filter(None, (data.get("queues") or "").split(","))),
        alive=registered and not lost,
        lost=lost,
        lost_after=bound,
    )


def read_all(now: datetime) -> RqStats:
    """Every queue of ``settings.RQ_QUEUES`` and every worker listening on any
    of them (each worker once)."""
    queues, workers = [], {}
    for index, name in enumerate(settings.RQ_QUEUES):
        stats, queue_workers = read_queue(name, index, now)
        queues.append(stats)
        workers.update(queue_workers)
    return RqStats(queues=queues, workers=[workers[name] for name in sorted(workers)])
