"""Recovery in process, on the suite's real Redis: which rows are handed
over again, which are left alone, and the worker that sweeps.

Transactional tests: jobs are enqueued when their row commits."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import django_rq
import pytest
from django.utils import timezone
from rq.job import Job

from tests.redis_server import RedisServer
from tests.validation.test_runner import create, used
from validation import worker as worker_module
from validation.jobs import run_validation_job
from validation.models import ValidationJob
from validation.queue import get_queue_service
from validation.recovery import jobs_recover
from validation.runner import job_run


def later(seconds: float) -> Any:
    return timezone.now() + timedelta(seconds=seconds)


def queued_ids() -> list[str]:
    return [
        job_id.decode() for job_id in django_rq.get_queue("validation").connection.lrange("rq:queue:validation", 0, -1)
    ]


def test_a_queued_job_with_its_queue_entry_is_left_alone(transactional_db: None, media_root: Path) -> None:
    job = create()
    assert queued_ids() == [job.rq_id]
    assert not jobs_recover(now=later(60))
    assert ValidationJob.objects.get(pk=job.pk).recoveries == 0


def test_a_queued_job_whose_entry_vanished_is_enqueued_again(
    transactional_db: None, media_root: Path, redis_server: RedisServer
) -> None:
    job = create()
    redis_server.client().flushall()  # Redis restarted empty
    assert not jobs_recover(now=later(1))  # still within the enqueue grace
    report = jobs_recover(now=later(60))
    assert report.requeued == [str(job.pk)]
    assert queued_ids() == [job.rq_id]
    row = ValidationJob.objects.get(pk=job.pk)
    assert (row.status, row.recoveries) == ("queued", 1)
    assert not jobs_recover(now=later(60))  # handed over once


@pytest.mark.parametrize("state", ["failed", "finished", "popped"])
def test_a_queued_job_whose_entry_cannot_run_is_enqueued_again(
    transactional_db: None, media_root: Path, state: str
) -> None:
    job = create()
    connection = django_rq.get_queue("validation").connection
    if state == "popped":  # a worker took the id off the queue and died before starting it
        connection.lrem("rq:queue:validation", 0, job.rq_id)
    else:
        connection.hset(Job.key_for(job.rq_id), "status", state)
    assert get_queue_service().lost([job.rq_id]) == {job.rq_id}
    assert jobs_recover(now=later(60)).requeued == [str(job.pk)]


def test_a_running_job_with_a_fresh_heartbeat_is_left_alone(transactional_db: None, media_root: Path) -> None:
    job = create()
    ValidationJob.objects.filter(pk=job.pk).update(status="running", attempts=1, heartbeat_at=timezone.now())
    assert not jobs_recover(now=later(30))
    report = jobs_recover(now=later(61))  # VALIDATION_STALE_SECONDS = 60
    assert report.requeued == [str(job.pk)]
    row = ValidationJob.objects.get(pk=job.pk)
    assert (row.status, row.attempts, row.heartbeat_at) == ("queued", 1, None)
    assert job_run(job_id=job.pk) == "succeeded"
    assert ValidationJob.objects.get(pk=job.pk).attempts == 2


def test_a_job_that_keeps_killing_its_workers_is_failed_and_refunded(transactional_db: None, media_root: Path) -> None:
    job = create()
    ValidationJob.objects.filter(pk=job.pk).update(status="running", attempts=3, heartbeat_at=timezone.now())
    report = jobs_recover(now=later(61))
    assert report.failed == [str(job.pk)]
    row = ValidationJob.objects.get(pk=job.pk)
    assert row.status == "failed"
    assert row.error["code"] == "worker_lost"
    assert row.refunded_at is not None
    assert used(job) == 0


def test_two_sweeps_hand_a_job_over_once(transactional_db: None, media_root: Path) -> None:
    job = create()
    ValidationJob.objects.filter(pk=job.pk).update(status="running", attempts=1, heartbeat_at=timezone.now())
    seen = ValidationJob.objects.get(pk=job.pk)
    from validation.recovery import _requeue

    fields = {"status": "running", "attempts": 1, "heartbeat_at": seen.heartbeat_at}
    assert _requeue(seen, seen=fields, reason="test", now=later(61))
    assert not _requeue(seen, seen=fields, reason="test", now=later(61))


def test_a_refund_that_redis_missed_is_retried(
    transactional_db: None, media_root: Path, own_redis: RedisServer
) -> None:
    job = create()
    ValidationJob.objects.filter(pk=job.pk).update(status="failed", refund_units=200)
    own_redis.kill()
    from validation.jobs import job_refund

    assert not job_refund(job_id=job.pk)
    assert ValidationJob.objects.get(pk=job.pk).refunded_at is None
    own_redis.start()
    assert jobs_recover(now=later(1)).refunded == [str(job.pk)]


def test_an_enqueue_that_redis_refused_is_recovered(
    transactional_db: None, media_root: Path, own_redis: RedisServer, caplog: Any
) -> None:
    from validation.jobs import job_enqueue

    job = create()
    own_redis.kill()
    assert job_enqueue(job=job) is False  # the upload still answers 202: the row is the truth
    assert "recovery will retry" in caplog.text
    own_redis.start()  # empty: the first entry is gone too
    assert jobs_recover(now=later(60)).requeued == [str(job.pk)]
    assert queued_ids() == [job.rq_id]


def own_worker() -> worker_module.ValidationWorker:
    """A worker on a connection of its own, as ``manage.py rqworker`` has:
    its blocking dequeue must not run on the web's short socket timeouts."""
    from django.conf import settings
    from redis import Redis
    from rq import Queue

    connection = Redis.from_url(settings.REDIS_URL)
    return worker_module.ValidationWorker([Queue("validation", connection=connection)], connection=connection)


def test_the_worker_sweeps_while_it_waits_for_jobs(transactional_db: None, settings: Any, monkeypatch: Any) -> None:
    settings.VALIDATION_RECOVERY_INTERVAL = 0.25
    sweeps: list[int] = []
    monkeypatch.setattr(worker_module, "jobs_recover_safely", lambda: sweeps.append(1))
    worker = own_worker()
    assert worker.dequeue_job_and_maintain_ttl(10, max_idle_time=1) is None
    assert len(sweeps) >= 3  # at start, then every 0.25 s of the idle second


def test_the_worker_returns_a_job_as_soon_as_one_is_queued(
    transactional_db: None, media_root: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(worker_module, "jobs_recover_safely", lambda: None)
    job = create()
    dequeued, _ = own_worker().dequeue_job_and_maintain_ttl(10)
    assert dequeued.id == job.rq_id
    assert dequeued.func == run_validation_job
