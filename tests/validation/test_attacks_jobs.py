"""The attacks on batch jobs, as users run them: a real gunicorn and real
``rqworker`` processes on a private Redis.

The schema analysis is turned off here (``VALIDATION_SCHEMA_COST_LIMIT``
very high) so that hostile schemas reach the worker: the time budget of every
record must hold on its own. Budgets are short (1 s a record) to keep the
suite fast. Each attack asserts the outcome and its codes, a bound on the time
taken and on what was written, and that the worker goes on to serve the next
job (of another account)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.factories import issue_key
from tests.processes import database_url, gunicorn, service_env
from tests.redis_server import RedisServer
from tests.validation.hostile import (
    alive,
    assert_documented,
    assert_error,
    children_of,
    fanout_chain,
    nested_array,
    within,
)
from tests.validation.stack import FAST_RECOVERY, Client, Worker, wait_for, worker
from validation.models import ValidationJob

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BUDGET = 1.0
ORDER = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
NDJSON = "application/x-ndjson"


@pytest.fixture(scope="module")
def env(django_db_setup: None, django_db_blocker: Any, redis_server: RedisServer, tmp_path_factory: Any) -> dict:
    with django_db_blocker.unblock():
        url = database_url()
    return service_env(
        REDIS_URL=redis_server.url,
        DATABASE_URL=url,
        MEDIA_ROOT=str(tmp_path_factory.mktemp("attack-media")),
        VALIDATION_SCHEMA_COST_LIMIT=str(10**12),
        VALIDATION_RECORD_TIME_LIMIT=str(BUDGET),
        VALIDATION_MAX_TIMEOUTS="3",
        VALIDATION_MAX_RECORD_BYTES=str(1 << 20),
        **FAST_RECOVERY,
    )


@pytest.fixture(scope="module")
def server(env: dict[str, str]) -> Iterator[str]:
    with gunicorn(env, workers=2) as base:
        yield base


def client(server: str, **plan: Any) -> Client:
    api = Client(server, issue_key(rate_limits="", quotas="1000000/day", **plan).key)
    assert api.register("order", "1", ORDER).status_code == 201
    return api


@pytest.fixture
def attacker(server: str) -> Client:
    api = client(server)
    # 20 levels of anyOf fan-out: a string passes at once, a number makes the
    # errors path run for minutes. The analysis that refuses it is off here.
    assert api.register("chain", "1", fanout_chain(20)).status_code == 201
    return api


def upload(api: Client, lines: list[Any], schema: str) -> str:
    response = api.upload(b"".join(orjson.dumps(line) + b"\n" for line in lines), schema=schema, content_type=NDJSON)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def serves_next(server: str, running: Worker) -> None:
    """Another account's one-record job is run promptly by the same worker."""
    other = client(server)
    job_id = upload(other, [{"id": 1}], "order/1")
    with within(15):
        job = other.finished(job_id)
    assert (job["status"], job["summary"]) == ("succeeded", {"valid": 1, "invalid": 0})
    assert running.process.poll() is None


def test_a_record_past_its_budget_is_stopped_and_the_job_goes_on(env: dict, server: str, attacker: Client) -> None:
    with worker(env) as running:
        job_id = upload(attacker, ["fine", 1, "also fine", 2.5, "last"], "chain/1")
        with within(2 * BUDGET + 20):
            job = attacker.finished(job_id)
        assert job["status"] == "succeeded", job
        assert job["summary"] == {"valid": 3, "invalid": 2}
        assert [(e["record"], e["code"]) for e in job["errors"]] == [
            (2, "validation_timeout"),
            (4, "validation_timeout"),
        ]
        lines = [orjson.loads(line) for line in attacker.errors(job_id)]
        assert [line["record"] for line in lines] == [2, 4]
        assert job["units"] == {"reserved": 5, "refunded": 0}
        serves_next(server, running)


def test_too_many_stopped_records_fail_the_job_and_refund_it(env: dict, server: str, attacker: Client) -> None:
    with worker(env) as running:
        job_id = upload(attacker, [1] * 20, "chain/1")
        with within(4 * (BUDGET + 1) + 20):
            job = attacker.finished(job_id)
        assert job["status"] == "failed"
        assert job["error"]["code"] == "too_many_timeouts"
        assert job["units"] == {"reserved": 20, "refunded": 20}
        serves_next(server, running)


def test_cancelling_stops_a_job_within_a_second_even_inside_one_long_record(
    env: dict, server: str, attacker: Client
) -> None:
    patient = {**env, "VALIDATION_RECORD_TIME_LIMIT": "120"}  # the record would run for two minutes
    with worker(patient) as running:
        job_id = upload(attacker, [1], "chain/1")
        row = wait_for(lambda: ValidationJob.objects.filter(pk=job_id, status="running").first(), timeout=30)
        horse = int(row.worker.rsplit(":", 1)[1])
        child = wait_for(lambda: next(iter(children_of(horse)), None), timeout=10)  # the guard's child, validating
        assert alive(child)
        with within(5):
            cancelled = attacker.http.delete(f"/api/v1/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert_documented(cancelled, "cancelJob")
        with within(1 + 2):  # noticed at the next progress tick, then both stopped
            wait_for(lambda: not alive(child) and not alive(horse), timeout=10, interval=0.05)
        assert attacker.job(job_id)["units"] == {"reserved": 1, "refunded": 1}
        serves_next(server, running)


def test_a_json_array_nested_100000_deep_is_one_too_deep_record(env: dict, server: str, attacker: Client) -> None:
    body = b"[" + nested_array(100_000) + b", 7]"
    assert len(body) < 210_000
    with worker(env) as running:
        with within(5):
            response = attacker.upload(body, schema="order/1", content_type="application/json")
        assert response.status_code == 202 and response.json()["records"] == 2
        with within(15):
            job = attacker.finished(response.json()["id"])
        assert job["summary"] == {"valid": 0, "invalid": 2}
        assert [(e["record"], e.get("code")) for e in job["errors"]] == [(0, "too_deep"), (1, None)]
        serves_next(server, running)


def test_a_json_array_item_over_the_record_limit_is_refused(server: str, attacker: Client) -> None:
    item = orjson.dumps({"id": 1, "pad": "x" * (2 << 20)})  # 2 MiB; the limit is 1 MiB here
    with within(10):
        response = attacker.upload(b"[" + item + b"]", schema="order/1", content_type="application/json")
    error = assert_error(response, 400, "invalid_upload", "createJob")
    assert "longer than 1048576 bytes" in error["message"] and len(response.content) < 1000


def test_a_schema_quoting_a_megabyte_writes_a_bounded_report(env: dict, server: str) -> None:
    api = client(server)
    assert api.register("big", "1", {"const": "c" * 10**6}).status_code == 201
    lines = [f'"z{n}"'.encode() for n in range(40)]
    body = b"\n".join(lines) + b"\n"
    assert len(body) < 300
    with worker(env) as running:
        response = api.upload(body, schema="big/1", content_type=NDJSON)
        assert response.status_code == 202
        with within(20):
            job = api.finished(response.json()["id"])
        answer = api.http.get(f"/api/v1/jobs/{job['id']}")
        assert job["summary"] == {"valid": 0, "invalid": 40}
        assert len(answer.content) < 30_000  # was 50 MB
        report = "\n".join(api.errors(job["id"]))
        # 40 lines of about 580 bytes: message, keyword location, params (each value cut).
        assert len(report) < 30_000 and "… (1000015 characters)" in report
        serves_next(server, running)
