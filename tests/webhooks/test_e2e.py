"""Webhooks on the real stack: gunicorn, an ``rqworker`` and Redis; a
receiver on loopback that fails twice and then succeeds gets the event three
times, signed, with one event id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories import issue_key
from tests.processes import database_url, gunicorn, service_env
from tests.redis_server import RedisServer
from tests.validation.conftest import ORDER_SCHEMA
from tests.validation.data import ndjson, orders
from tests.validation.stack import FAST_RECOVERY, Client, wait_for, worker
from tests.webhooks.receiver import receiver, signature_valid
from webhooks.models import Delivery

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def env(django_db_setup: None, django_db_blocker: Any, redis_server: RedisServer, tmp_path_factory: Any) -> dict:
    with django_db_blocker.unblock():
        url = database_url()
    media = tmp_path_factory.mktemp("webhooks-media")
    return service_env(
        REDIS_URL=redis_server.url,
        DATABASE_URL=url,
        MEDIA_ROOT=str(media),
        WEBHOOKS_ALLOW_PRIVATE="true",
        WEBHOOK_RETRY_BASE_SECONDS="0.3",
        **FAST_RECOVERY,
    )


@pytest.fixture(scope="module")
def server(env: dict[str, str]) -> Iterator[str]:
    with gunicorn(env, workers=2) as base:
        yield base


def test_a_failing_receiver_is_retried_until_it_takes_the_signed_event(env: dict[str, str], server: str) -> None:
    api = Client(server, issue_key(rate_limits="", quotas="100000/day").key)
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    with receiver([500, 502, 200]) as hook, worker(env):
        created = api.http.post("/api/v1/webhooks", json={"url": hook.url, "events": ["job.succeeded"]})
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        job = api.upload(ndjson(orders(50, invalid_every=10)[0]), schema="order/1", content_type="application/x-ndjson")
        assert job.status_code == 202
        job_id = job.json()["id"]
        received = hook.wait(3)
        delivery = wait_for(lambda: Delivery.objects.filter(status="succeeded").first())
    assert len({got.headers["tollgate-event-id"] for got in received}) == 1
    assert all(signature_valid(got.headers["tollgate-signature"], got.body, secret) for got in received)
    event = json.loads(received[-1].body)
    assert event["type"] == "job.succeeded" and event["data"]["job"]["id"] == job_id
    assert event["data"]["job"]["summary"] == {"valid": 45, "invalid": 5}
    assert delivery.attempts == 3 and delivery.response_status == 200
    assert str(delivery.event_id) == event["id"]


def test_a_cancelled_job_is_delivered(env: dict[str, str], server: str) -> None:
    api = Client(server, issue_key(rate_limits="", quotas="100000/day").key)
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    with receiver() as hook:
        created = api.http.post("/api/v1/webhooks", json={"url": hook.url, "events": ["job.cancelled"]})
        secret = created.json()["secret"]
        # No worker yet: the job stays queued and is cancelled by the API.
        job_id = api.upload(
            ndjson(orders(5, invalid_every=10)[0]), schema="order/1", content_type="application/x-ndjson"
        ).json()["id"]
        assert api.http.delete(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"
        with worker(env):
            [got] = hook.wait(1)
    assert json.loads(got.body)["type"] == "job.cancelled"
    assert signature_valid(got.headers["tollgate-signature"], got.body, secret)
