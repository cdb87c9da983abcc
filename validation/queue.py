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
from django.db import transaction


class QueueService(Protocol):
    name: str

    def ping(self) -> None: ...
    def depth(self) -> int: ...
    def enqueue(self, func: Callable[..., Any], *args: Any, job_id: str | None = None) -> None: ...


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

    def enqueue(self, func: Callable[..., Any], *args: Any, job_id: str | None = None) -> None:
        self._queue("validation").enqueue(func, *args, job_id=job_id)


class MemoryQueueService:
    """DEMO_MODE: one worker thread in this process."""

    name = "memory"

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-queue")
        self._pending = 0
        self._lock = threading.Lock()

    def ping(self) -> None:
        return None

    def depth(self) -> int:
        return self._pending

    def enqueue(self, func: Callable[..., Any], *args: Any, job_id: str | None = None) -> None:
        def run() -> None:
            with self._lock:
                self._pending -= 1
            func(*args)

        def submit() -> None:
            with self._lock:
                self._pending += 1
            self._executor.submit(run)

        transaction.on_commit(submit)


def get_queue_service() -> QueueService:
    """The queue for the current settings: RQ on Redis, or in DEMO_MODE a
    thread of this process. One instance of each per process."""
    return _service(settings.DEMO_MODE)


@functools.cache
def _service(demo_mode: bool) -> QueueService:
    return MemoryQueueService() if demo_mode else RedisQueueService()
