"""Worker liveness from heartbeats, with the real ``rqworker``: a worker
killed with SIGKILL is shown as lost within a few heartbeats (not when rq's
registration expires, minutes later) and ``/health`` turns "degraded" while
jobs wait; after a Redis restart the same worker, never restarted, is shown
alive again and runs the next job."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.test import Client
from django.test.utils import override_settings
from rq import Queue

from tests.health.jobs import failed_validation_job
from tests.health.ops import DATA, PAGE
from tests.processes import database_url, service_env
from tests.redis_server import RedisServer
from tests.validation.stack import FAST_RECOVERY, wait_for, worker
from validation.failed_jobs import failed_job_retry

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# One heartbeat a second: lost after 3 s of silence (WORKER_LOST_AFTER = 3).
HEARTBEAT = {"WORKER_HEARTBEAT_SECONDS": "1"}


def _env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return service_env(REDIS_URL=redis.url, DATABASE_URL=database_url(), **FAST_RECOVERY, **HEARTBEAT, **extra)


def _workers(admin_client: Client) -> list[dict[str, Any]]:
    return admin_client.get(DATA).json()["workers"] or []


def test_a_killed_worker_is_lost_within_its_bound_and_health_degrades(
    admin_client: Client, client: Client, own_redis: RedisServer, tmp_path: Any
) -> None:
    # Not pytest-django's `settings`: its teardown would bring own_redis's settings back.
    with (
        override_settings(WORKER_HEARTBEAT_SECONDS=1, MEDIA_ROOT=tmp_path),
        worker(_env(own_redis, MEDIA_ROOT=str(tmp_path))) as process,
    ):
        (alive,) = wait_for(lambda: [w for w in _workers(admin_client) if w["alive"]], timeout=30)
        assert alive["state"] not in ("lost", "gone") and alive["lost"] is False
        body = client.get("/health").json()
        assert (body["status"], body["queue"]["live_workers"]) == ("healthy", 1)

        process.kill()
        # A job waits: failed, then retried by an operator, so queued in the
        # job table and in RQ, with no worker to run it.
        failed_job_retry(job_id=str(failed_validation_job().pk))

        def lost() -> dict[str, Any] | None:
            (row,) = _workers(admin_client)
            return row if row["lost"] else None

        # rq itself keeps the dead worker "idle" for worker_ttl + 60 s (480 s).
        row = wait_for(lost, timeout=20, interval=0.2)
        assert row["name"] == alive["name"] and row["state"] == "lost" and row["alive"] is False
        assert row["heartbeat_age"] > row["lost_after"] == 3.0

        response = client.get("/health")
        assert response.status_code == 200  # the web tier is fine: no restart for a worker problem
        body = response.json()
        assert body["status"] == "degraded"
        assert body["queue"]["live_workers"] == 0 and body["queue"]["lost_workers"] == 1
        assert body["queue"]["jobs_waiting"] >= 1
        assert [warning["code"] for warning in body["warnings"]] == ["no_live_worker"]

        data = admin_client.get(DATA).json()
        assert data["no_worker_while_jobs_wait"] is True and data["lost_workers"] == 1
        html = admin_client.get(PAGE).content.decode()
        assert 'id="ops-worker-banner"' in html and "1 worker lost" in html
        assert 'title="no heartbeat for longer than 3 s">lost</span>' in html


def test_after_a_redis_restart_the_live_worker_reappears_and_runs_jobs(
    admin_client: Client, client: Client, own_redis: RedisServer
) -> None:
    with override_settings(WORKER_HEARTBEAT_SECONDS=1), worker(_env(own_redis)) as process:
        (before,) = wait_for(lambda: [w for w in _workers(admin_client) if w["alive"]], timeout=30)

        own_redis.restart()  # empty: the worker's registration is gone with everything else

        # The same worker process, never restarted, registers itself again.
        def back() -> list[dict[str, Any]]:
            return [w for w in _workers(admin_client) if w["alive"] and w["name"] == before["name"]]

        wait_for(back, timeout=30, interval=0.2)  # a few heartbeats; more on a loaded machine
        assert process.process.poll() is None
        body = client.get("/health").json()
        assert body["status"] == "healthy" and body["queue"]["live_workers"] == 1
        html = admin_client.get(PAGE).content.decode()
        assert "No worker registered" not in html and 'id="ops-worker-banner"' not in html

        # And it works: a job enqueued now is run.
        queue = Queue("validation", connection=own_redis.client())
        job = queue.enqueue("tests.health.rq_jobs.succeed")
        wait_for(lambda: job.get_status(refresh=True) == "finished", timeout=30, interval=0.2)
        assert "registered again" in process.output()


def test_the_worker_skips_its_maintenance_rather_than_quit_while_redis_is_down(own_redis: RedisServer) -> None:
    from redis import Redis

    from validation.worker import ValidationWorker

    connection = Redis.from_url(own_redis.url)
    worker_ = ValidationWorker([Queue("validation", connection=connection)], connection=connection)
    own_redis.kill()
    # RQ's own would raise here, outside its retrying dequeue, and the worker would quit.
    worker_.run_maintenance_tasks()
    worker_.check_for_suspension(False)


def test_the_worker_waits_for_redis_between_its_waits_rather_than_quit(own_redis: RedisServer) -> None:
    from redis import Redis

    from validation.worker import ValidationWorker

    connection = Redis.from_url(own_redis.url)
    queue = Queue("validation", connection=connection)
    worker_ = ValidationWorker([queue], connection=connection)
    own_redis.kill()

    def back() -> None:
        time.sleep(1.5)
        own_redis.start()
        queue.enqueue("tests.health.rq_jobs.succeed")

    thread = threading.Thread(target=back)
    thread.start()
    try:
        # RQ's own writes the worker's state before its retrying wait: with
        # Redis down that raised, and the worker quit.
        with override_settings(WORKER_HEARTBEAT_SECONDS=1, VALIDATION_RECOVERY_INTERVAL=0.25):
            result = worker_.dequeue_job_and_maintain_ttl(timeout=5, max_idle_time=20)
    finally:
        thread.join()
    assert result is not None and result[0].func_name == "tests.health.rq_jobs.succeed"
