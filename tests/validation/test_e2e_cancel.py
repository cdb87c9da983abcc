"""A job cancelled while it runs, on the real stack (gunicorn, rqworker,
Redis): it stops, refunds what it did not process, and keeps the report of
what it did."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.factories import issue_key
from tests.processes import gunicorn
from tests.redis_server import RedisServer
from tests.validation.conftest import ORDER_SCHEMA
from tests.validation.data import ndjson, orders
from tests.validation.stack import Client, stack_env, wait_for, worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RECORDS = 400_000


@pytest.fixture(scope="module")
def env(django_db_setup: None, django_db_blocker: Any, redis_server: RedisServer, tmp_path_factory: Any) -> dict:
    return stack_env(django_db_blocker, redis_server.url, tmp_path_factory.mktemp("cancel-media"))


@pytest.fixture(scope="module")
def server(env: dict[str, str]) -> Iterator[str]:
    with gunicorn(env, workers=2) as base:
        yield base


def test_a_job_cancelled_while_running_keeps_the_report_of_what_it_processed(env: dict, server: str) -> None:
    api = Client(server, issue_key(rate_limits="", quotas=f"{RECORDS}/day").key)
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    records, invalid = orders(RECORDS, invalid_every=1000)
    job_id = api.upload(ndjson(records), schema="order/1", content_type="application/x-ndjson").json()["id"]
    with worker(env):
        wait_for(lambda: api.job(job_id)["progress"]["processed"] >= 5000, timeout=60)
        cancelled = api.http.delete(f"/api/v1/jobs/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        processed = cancelled.json()["progress"]["processed"]
        expected = [n + 1 for n in sorted(invalid) if n < processed]
        # The run notices within a progress interval and saves its report.
        wait_for(lambda: len(api.errors(job_id)) == len(expected), timeout=30)
    job = api.job(job_id)
    assert job["status"] == "cancelled" and 5000 <= processed < RECORDS
    assert job["progress"]["processed"] == processed
    assert job["units"] == {"reserved": RECORDS, "refunded": RECORDS - processed}
    assert api.usage()["daily-quota"] == processed
    lines = [orjson.loads(line) for line in api.errors(job_id)]
    assert [(line["record"], line["record_kind"]) for line in lines] == [(n, "line") for n in expected]
    assert job["summary"] == {"valid": processed - len(expected), "invalid": len(expected)}
