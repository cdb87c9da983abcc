"""The RQ worker class of ``manage.py rqworker`` (``settings.RQ["WORKER_CLASS"]``).

It is RQ's forking worker plus the usage ledger's flusher (a thread, see
``quotas.flusher``) and the recovery sweep (``validation.recovery``; with it,
the expiry of idempotency keys and the hand-over of due webhook deliveries),
run in the worker's main process:

- when the worker starts, and then every ``VALIDATION_RECOVERY_INTERVAL``
  seconds while it waits for jobs (the blocking dequeue is cut into slices
  of that length instead of RQ's ~7 minutes);
- while a job runs, at RQ's horse-monitoring ticks (every 30 s), so one long
  job does not hold up the recovery of others.

The sweep uses the database in the parent process, which forks a work horse
per job: it closes its connections after every sweep, so that no child
inherits (and corrupts) an open database socket.

Liveness (``health.rq_stats``): the worker heartbeats every
``WORKER_HEARTBEAT_SECONDS``, idle (the dequeue is cut into slices that long)
or busy (RQ's horse-monitoring interval is set to it), and writes that
interval into its registration, so that a reader can tell a worker whose
heartbeat is older than a few intervals as lost at once, instead of waiting
for RQ's ~8-minute expiry. A heartbeat that finds its registration gone
(Redis restarted or flushed) registers the worker again, so it reappears
within one interval without a restart; RQ's registry cleaning and suspension
check, which RQ runs outside its retrying dequeue, skip a turn instead of
ending the worker when Redis does not answer.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connections
from redis import ConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import worker_registration
from rq.worker import Worker

from idempotency.services import keys_expire_safely
from quotas.backends import process_flusher
from validation.recovery import jobs_recover_safely
from webhooks.services import deliveries_hand_over_safely

DEFAULT_RECOVERY_INTERVAL = 10.0
DEFAULT_HEARTBEAT_SECONDS = 5
# The field of the worker's RQ hash that holds its heartbeat interval.
HEARTBEAT_INTERVAL_FIELD = "heartbeat_interval"


def recovery_interval() -> float:
    return max(0.2, float(getattr(settings, "VALIDATION_RECOVERY_INTERVAL", DEFAULT_RECOVERY_INTERVAL)))


def heartbeat_seconds() -> int:
    """The worker's heartbeat interval: whole seconds (RQ's blocking dequeue
    and horse monitoring take whole seconds), at least 1."""
    return max(1, round(float(getattr(settings, "WORKER_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS))))


class ValidationWorker(Worker):
    """RQ ``Worker`` that also recovers lost validation jobs."""

    _last_sweep = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("job_monitoring_interval", heartbeat_seconds())
        super().__init__(*args, **kwargs)
        # A Redis that comes back is tried again within one heartbeat, not
        # after RQ's backoff of up to a minute.
        self.max_connection_wait_time = float(heartbeat_seconds())

    def serialize(self) -> dict[str, Any]:
        return {**super().serialize(), HEARTBEAT_INTERVAL_FIELD: heartbeat_seconds()}

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat, plus the worker's registration when Redis lost it.

        In a caller's pipeline (RQ's ``maintain_heartbeats``, which rewrites
        a vanished hash itself) only the idempotent set memberships are
        added. On its own, the hash's ``last_heartbeat`` write tells whether
        the hash was gone (a new field); then the whole registration is
        written again, with the same TTL."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            worker_registration.register(self, pipeline)
            return
        with self.connection.pipeline() as pipe:
            super().heartbeat(timeout, pipeline=pipe)
            worker_registration.register(self, pipe)
            recreated = pipe.execute()[0] == 1
            # Only a worker that registered its birth has a registration to restore.
            if recreated and self.birth_date is not None:
                pipe.hset(self.key, mapping=self.serialize())  # type: ignore[arg-type]
                pipe.expire(self.key, timeout or self.worker_ttl + 60)
                pipe.execute()
                self.log.info("Worker %s: registered again (Redis had lost its registration)", self.name)

    def _set_connection(self, connection: Redis) -> Redis:
        """A pool of the worker's own for its blocking dequeue.

        RQ waits on the queue longer than the shared pool's 0.25 s socket
        timeout and would raise that timeout for the whole pool; the shared
        pool pins it (project.redis.PinnedTimeoutConnectionPool), so jobs and
        their charges keep failing fast on a hung Redis, while the dequeue
        uses this copy of the same options with RQ's longer timeout.
        """
        shared = connection.connection_pool
        options = {**shared.connection_kwargs, "socket_timeout": self.connection_timeout}
        return Redis(connection_pool=ConnectionPool(connection_class=shared.connection_class, **options))

    def run_maintenance_tasks(self) -> None:
        """RQ's registry cleaning, which a Redis that is restarting must not
        turn into the worker quitting (RQ quits on any error outside its
        dequeue): skipped, and tried again on the next turn."""
        try:
            super().run_maintenance_tasks()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self.log.warning("Worker %s: maintenance skipped, Redis did not answer (%s)", self.name, type(exc).__name__)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's suspension check, which a Redis that is restarting must not
        turn into the worker quitting: not suspended, as far as it can tell."""
        try:
            super().check_for_suspension(burst)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self.log.warning("Worker %s: suspension unknown, Redis did not answer (%s)", self.name, type(exc).__name__)

    def sweep(self, *, force: bool = False) -> None:
        """Run a recovery sweep if one is due (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_sweep < recovery_interval():
            return
        self._last_sweep = now
        try:
            report = jobs_recover_safely()
            expired = keys_expire_safely()
            handed = deliveries_hand_over_safely()
        finally:
            connections.close_all()
        if report:
            self.log.info(
                "Worker %s: recovery requeued %s, failed %s, refunded %s job(s), deleted the files of %s",
                self.name,
                len(report.requeued),
                len(report.failed),
                len(report.refunded),
                len(report.expired),
            )
        if expired:
            self.log.info("Worker %s: deleted %s expired idempotency key(s)", self.name, expired)
        if handed:
            self.log.info("Worker %s: handed %s due webhook delivery(ies) to the queue", self.name, handed)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """Wait for a job in slices of the recovery interval, sweeping
        between slices. Burst mode (``timeout`` None) sweeps once."""
        self.sweep(force=self._last_sweep == 0.0)
        if timeout is None:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        idle_deadline = None if max_idle_time is None else time.monotonic() + max_idle_time
        # Each blocking wait lasts one heartbeat at most (RQ heartbeats
        # between them); RQ returns None once a slice passes idle (its
        # max_idle_time), and the sweep runs between slices.
        timeout = min(timeout, heartbeat_seconds())
        while True:
            try:
                result = super().dequeue_job_and_maintain_ttl(timeout, recovery_interval())  # type: ignore[arg-type]
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # RQ retries inside its wait, not in the state write before it
                # or the heartbeat after it: Redis gone at a slice's edge
                # would end the worker ("unhandled exception, quitting").
                self.log.warning("Worker %s: Redis did not answer (%s); retrying in 1 s", self.name, exc)
                time.sleep(1)
                result = None
            if result is not None:
                return result
            if idle_deadline is not None and time.monotonic() >= idle_deadline:
                return None
            self.sweep()

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's loop, with the usage ledger's flusher in a thread of this
        process (``quotas.flusher``), stopped after one last pass."""
        flusher = process_flusher()
        flusher.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            flusher.stop()

    def maintain_heartbeats(self, job: Any, execution: Any) -> None:
        super().maintain_heartbeats(job, execution)
        self.sweep()
