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
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connections
from redis import ConnectionPool, Redis
from rq.worker import Worker

from idempotency.services import keys_expire_safely
from quotas.backends import process_flusher
from validation.recovery import jobs_recover_safely
from webhooks.services import deliveries_hand_over_safely

DEFAULT_RECOVERY_INTERVAL = 10.0


def recovery_interval() -> float:
    return max(0.2, float(getattr(settings, "VALIDATION_RECOVERY_INTERVAL", DEFAULT_RECOVERY_INTERVAL)))


class ValidationWorker(Worker):
    """RQ ``Worker`` that also recovers lost validation jobs."""

    _last_sweep = 0.0

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
        while True:
            # RQ returns None once a slice passes idle (its max_idle_time).
            result = super().dequeue_job_and_maintain_ttl(timeout, recovery_interval())  # type: ignore[arg-type]
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
