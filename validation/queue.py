"""The queue service: where validation jobs wait for a worker.

With Redis, jobs go to RQ (django-rq) on the queues of ``settings.RQ_QUEUES``,
enqueued when the database transaction commits. In DEMO_MODE they run on a
thread of the web process, which is per-process and loses queued jobs on
restart. :func:`get_queue_service` picks one from the settings at call time.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from django.conf import settings
from django.db import connections, transaction


class QueueService(Protocol):
    name: str

    def ping(self) -> None: ...
    def depth(self) -> int: ...
    def enqueue(
        self, func: Callable[..., Any], *args: Any, job_id: str | None = None, queue: str = "validation"
    ) -> None: ...
    def lost(self, job_ids: list[str]) -> set[str]: ...


# RQ statuses after which an entry will never run its job again.
_ENDED = {"finished", "failed", "stopped", "canceled"}


class RedisQueueService:
    """RQ through django-rq, sharing the counters' connection pool."""

    name = "redis"

    @staticmethod
    def queue_names() -> list[str]:
        return list(settings.RQ_QUEUES)

    def _queue(self, name: str) -> Any:
        import django_rq

        return django_rq.get_queue(name)

    def ping(self) -> None:
        import django_rq

        django_rq.get_connection(self.queue_names()[0]).ping()

    def depth(self) -> int:
        """Jobs waiting (not started) in all of the service's queues, in one
        round trip."""
        import django_rq

        connection = django_rq.get_connection(self.queue_names()[0])
        pipe = connection.pipeline(transaction=False)
        for name in self.queue_names():
            pipe.llen(self._queue(name).key)
        return sum(pipe.execute())

    def enqueue(
        self, func: Callable[..., Any], *args: Any, job_id: str | None = None, queue: str = "validation"
    ) -> None:
        self._queue(queue).enqueue(func, *args, job_id=job_id)

    def lost(self, job_ids: list[str]) -> set[str]:
        """Which of these RQ job ids will not run: no entry (Redis flushed or
        restarted), an entry that has ended, or one marked queued that is in
        no queue (a worker popped it and died before starting it). Two
        pipelined round trips. A ``started`` entry counts as alive; the
        caller judges running jobs by their own heartbeat."""
        from rq.job import Job

        if not job_ids:
            return set()
        queue = self._queue("validation")
        connection = queue.connection
        pipe = connection.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")
        statuses = [s.decode() if isinstance(s, bytes) else s for s in pipe.execute()]
        lost = {job_id for job_id, status in zip(job_ids, statuses, strict=True) if status is None or status in _ENDED}
        waiting = [job_id for job_id, status in zip(job_ids, statuses, strict=True) if status == "queued"]
        if waiting:
            pipe = connection.pipeline(transaction=False)
            for job_id in waiting:
                pipe.lpos(queue.key, job_id)
            lost.update(job_id for job_id, position in zip(waiting, pipe.execute(), strict=True) if position is None)
        return lost


class MemoryQueueService:
    """DEMO_MODE: one worker thread in this process."""

    name = "memory"

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-queue")
        self._pending = 0
        self._lock = threading.Lock()
        # Ids handed to this process's thread (its jobs die with it).
        self._known: set[str] = set()

    def ping(self) -> None:
        return None

    def depth(self) -> int:
        return self._pending

    def enqueue(
        self, func: Callable[..., Any], *args: Any, job_id: str | None = None, queue: str = "validation"
    ) -> None:
        def run() -> None:
            with self._lock:
                self._pending -= 1
            try:
                func(*args)
            finally:
                # This thread's database connection is not request-scoped:
                # close it, or every job leaks one.
                connections.close_all()

        def submit() -> None:
            with self._lock:
                self._pending += 1
                if job_id is not None:
                    self._known.add(job_id)
            self._executor.submit(run)

        transaction.on_commit(submit)

    def lost(self, job_ids: list[str]) -> set[str]:
        """Ids never handed to this process (a restart lost them)."""
        with self._lock:
            return {job_id for job_id in job_ids if job_id not in self._known}


def get_queue_service() -> QueueService:
    """The queue for the current settings: RQ on Redis, or in DEMO_MODE a
    thread of this process. One instance of each per process."""
    return _service(settings.DEMO_MODE)


@functools.cache
def _service(demo_mode: bool) -> QueueService:
    return MemoryQueueService() if demo_mode else RedisQueueService()
