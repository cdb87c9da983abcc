"""The shared pool keeps its short timeouts whatever RQ does with it."""

from __future__ import annotations

import django_rq
from rq.worker import Worker

from quotas.backends import get_backend
from tests.redis_server import RedisServer
from validation.worker import ValidationWorker


def shared_pool():  # type: ignore[no-untyped-def]
    return get_backend().client().connection_pool  # type: ignore[attr-defined]


def test_listing_workers_like_the_rq_dashboard_leaves_timeouts_alone(redis_server: RedisServer) -> None:
    queue = django_rq.get_queue("validation")
    assert queue.connection.connection_pool is shared_pool()
    Worker([queue], connection=queue.connection)  # what Worker.all() / find_by_key build
    Worker.all(queue.connection)
    assert shared_pool().connection_kwargs["socket_timeout"] == 0.25
    assert shared_pool().connection_kwargs["socket_connect_timeout"] == 0.25


def test_the_worker_waits_on_a_pool_of_its_own(redis_server: RedisServer) -> None:
    queue = django_rq.get_queue("validation")
    worker = ValidationWorker([queue], connection=queue.connection)
    assert worker.connection.connection_pool is not shared_pool()
    assert worker.connection.connection_pool.connection_kwargs["socket_timeout"] == worker.connection_timeout > 60
    assert worker.connection.ping()
    assert shared_pool().connection_kwargs["socket_timeout"] == 0.25


def test_other_options_still_change(redis_server: RedisServer) -> None:
    pool = shared_pool()
    pool.connection_kwargs.update({"client_name": "x", "socket_timeout": 99})
    assert pool.connection_kwargs["client_name"] == "x"
    assert pool.connection_kwargs["socket_timeout"] == 0.25
    del pool.connection_kwargs["client_name"]
