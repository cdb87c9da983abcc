"""Batch jobs as users run them: a real gunicorn and real ``rqworker``
processes on a private Redis, uploads over HTTP, exact results.

The worker's recovery timings are shortened (tests.validation.stack.FAST_RECOVERY)
so that a killed worker's job is recovered within seconds.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.factories import issue_key
from tests.processes import gunicorn
from tests.redis_server import RedisServer
from tests.validation.conftest import ORDER_SCHEMA
from tests.validation.data import csv_text, ndjson, orders
from tests.validation.stack import Client, kill_pid, stack_env, wait_for, worker
from validation.models import ValidationJob

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUOTA = 2_000_000


@pytest.fixture(scope="module")
def stack_redis() -> Iterator[RedisServer]:
    """This module's own Redis: the flush test empties it."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(django_db_setup: None, django_db_blocker: Any, stack_redis: RedisServer, tmp_path_factory: Any) -> dict:
    return stack_env(django_db_blocker, stack_redis.url, tmp_path_factory.mktemp("e2e-media"))


@pytest.fixture(scope="module")
def server(env: dict[str, str]) -> Iterator[str]:
    with gunicorn(env, workers=2) as base:
        yield base


@pytest.fixture
def client(server: str) -> Client:
    key = issue_key(rate_limits="1000/s", quotas=f"{QUOTA}/day", max_sync_instances=50).key
    api = Client(server, key)
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    return api


def report_records(api: Client, job_id: str) -> list[int]:
    return [orjson.loads(line)["record"] for line in api.errors(job_id)]


def test_ndjson_10k_records_exact_counts_error_lines_and_quota(env: dict[str, str], client: Client) -> None:
    records, invalid = orders(10_000, invalid_every=97)
    body = bytearray(ndjson(records))
    # Record 5001 (line 5001) is not JSON; a blank line follows it (line 5002).
    lines = body.split(b"\n")
    lines[5000] = b'{"id": 5000, "qty": '
    lines.insert(5001, b"")
    payload = b"\n".join(lines)
    invalid_lines = sorted({n + 1 if n < 5001 else n + 2 for n in invalid} | {5001})

    with worker(env):
        response = client.upload(payload, schema="order/1", content_type="application/x-ndjson")
        assert response.status_code == 202, response.text
        assert response.headers["Location"] == response.json()["url"]
        job = client.finished(response.json()["id"])

    assert job["status"] == "succeeded", job
    assert job["progress"] == {"processed": 10_000, "total": 10_000}
    assert job["summary"] == {"valid": 10_000 - len(invalid_lines), "invalid": len(invalid_lines)}
    assert report_records(client, job["id"]) == invalid_lines
    broken = next(e for e in job["errors"] if e["record"] == 5001)
    assert broken["code"] == "invalid_json"
    first = job["errors"][0]
    assert first == {
        "record": 97,
        "record_kind": "line",
        "instance_path": "/qty",
        "schema_path": "/properties/qty/minimum",
        "keyword_location": "tollgate://schemas/order/1#/properties/qty/minimum",
        "keyword": "minimum",
        "message": "0 is less than the minimum of 1",
        "params": {"limit": 1},
    }
    # One unit per record, charged once (polling and registering are free).
    assert client.usage() == {"daily-quota": 10_000}


def test_json_array_and_csv_jobs_give_exact_counts(env: dict[str, str], client: Client) -> None:
    records, invalid = orders(3_000, invalid_every=50)
    array = orjson.dumps(records)
    csv_records, csv_invalid = orders(2_000, invalid_every=40)
    csv_records[10]["email"] = "not an address"  # data row 11
    table = csv_text(csv_records)

    with worker(env):
        array_job = client.upload(array, schema="order/1", content_type="application/json").json()
        csv_job = client.upload(table, schema="order/1", content_type="text/csv").json()
        array_done = client.finished(array_job["id"])
        csv_done = client.finished(csv_job["id"])

    assert array_done["summary"] == {"valid": 3_000 - len(invalid), "invalid": len(invalid)}
    assert report_records(client, array_job["id"]) == sorted(invalid)  # 0-based array indexes
    expected_rows = sorted({n + 1 for n in csv_invalid} | {11})  # 1-based data rows
    assert csv_done["summary"] == {"valid": 2_000 - len(expected_rows), "invalid": len(expected_rows)}
    assert report_records(client, csv_job["id"]) == expected_rows
    assert client.usage() == {"daily-quota": 5_000}


def test_worker_killed_mid_job_then_restarted_finishes_it(env: dict[str, str], client: Client) -> None:
    records, invalid = orders(300_000, invalid_every=1000)
    first = worker(env)
    running = first.__enter__()
    try:
        job_id = client.upload(ndjson(records), schema="order/1", content_type="application/x-ndjson").json()["id"]
        # Mid-job: claimed, some records processed, far from done.
        row = wait_for(
            lambda: ValidationJob.objects.filter(pk=job_id, status="running", processed__gt=0).first(),
            interval=0.02,
        )
        assert row.processed < row.total
        horse = int(row.worker.rsplit(":", 1)[1])
        assert horse != running.pid  # RQ forks a work horse per job
        os.kill(horse, signal.SIGSTOP)  # freeze it, then kill both, as a lost host would
        running.kill()
        kill_pid(horse)
    finally:
        first.__exit__(None, None, None)
    killed_at = ValidationJob.objects.get(pk=job_id)
    assert killed_at.status == "running"
    assert 0 < killed_at.processed < killed_at.total

    with worker(env):
        job = client.finished(job_id)
    assert job["status"] == "succeeded"
    assert job["attempts"] >= 2
    assert job["summary"] == {"valid": 300_000 - len(invalid), "invalid": len(invalid)}
    assert report_records(client, job_id) == sorted(n + 1 for n in invalid)
    assert client.usage() == {"daily-quota": 300_000}  # the rerun charged nothing


def test_redis_flushed_with_jobs_queued_every_job_still_finishes(
    env: dict[str, str], client: Client, stack_redis: RedisServer
) -> None:
    records, invalid = orders(100_000, invalid_every=500)
    payload = ndjson(records)
    with worker(env):
        ids = [
            client.upload(payload, schema="order/1", content_type="application/x-ndjson").json()["id"] for _ in range(3)
        ]
        wait_for(lambda: ValidationJob.objects.filter(pk__in=ids, status="running").exists(), interval=0.02)
        assert ValidationJob.objects.filter(pk__in=ids, status="queued").count() >= 1
        stack_redis.client().flushall()  # every queue entry, registry and counter is gone
        jobs = [client.finished(job_id) for job_id in ids]
    for job in jobs:
        assert job["status"] == "succeeded", job
        assert job["summary"] == {"valid": 100_000 - len(invalid), "invalid": len(invalid)}
    assert sum(ValidationJob.objects.filter(pk__in=ids).values_list("recoveries", flat=True)) >= 1


def test_upload_is_deleted_once_its_job_succeeds(env: dict[str, str], client: Client) -> None:
    payload = ndjson(orders(10, invalid_every=3)[0])
    with worker(env):
        job_id = client.upload(payload, schema="order/1", content_type="application/x-ndjson").json()["id"]
        stored = Path(env["MEDIA_ROOT"]) / ValidationJob.objects.get(pk=job_id).upload
        client.finished(job_id)
    assert ValidationJob.objects.get(pk=job_id).upload == ""
    assert not stored.exists()
