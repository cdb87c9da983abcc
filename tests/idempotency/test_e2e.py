"""Idempotency-Key on the real stack: gunicorn (two workers) and Redis;
simultaneous identical uploads charge once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from idempotency.models import IdempotencyKey
from tests.factories import issue_key
from tests.processes import database_url, gunicorn, service_env
from tests.redis_server import RedisServer
from tests.validation.conftest import ORDER_SCHEMA
from tests.validation.data import ndjson, orders
from tests.validation.stack import FAST_RECOVERY, Client, wait_for, worker
from validation.models import ValidationJob

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, django_db_blocker: Any, redis_server: RedisServer, tmp_path_factory: Any
) -> Iterator[str]:
    with django_db_blocker.unblock():
        url = database_url()
    media = tmp_path_factory.mktemp("idempotency-media")
    with gunicorn(service_env(REDIS_URL=redis_server.url, DATABASE_URL=url, MEDIA_ROOT=str(media)), workers=2) as base:
        yield base


@pytest.mark.parametrize("round_", range(3))
def test_two_identical_uploads_at_once_make_one_job_charged_once(server: str, round_: int) -> None:
    key = issue_key(rate_limits="", quotas="1000000/day").key
    api = Client(server, key)
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    body = ndjson(orders(5000, invalid_every=50)[0])
    barrier = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            barrier.wait()
            answers.append(
                http.post(
                    "/api/v1/jobs?schema=order/1",
                    content=body,
                    headers={"Content-Type": "application/x-ndjson", "Idempotency-Key": f"at-once-{round_}"},
                )
            )

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(answer.status_code for answer in answers)
    print("two at once:", statuses)
    assert statuses in ([202, 202], [202, 409]), [answer.text for answer in answers]
    if statuses == [202, 202]:  # the second came once the first had finished: a replay
        assert answers[0].content == answers[1].content
        assert sorted(answer.headers.get("Idempotent-Replayed", "") for answer in answers) == ["", "true"]
    else:
        conflict = next(answer for answer in answers if answer.status_code == 409)
        assert conflict.json()["error"]["code"] == "idempotency_in_progress"
    assert ValidationJob.objects.filter(account__api_keys__prefix=key.split("_")[1]).count() == 1
    assert api.usage()["daily-quota"] == 5000

    # A retry once the first has answered: the same answer, not charged again.
    retry = api.http.post(
        "/api/v1/jobs?schema=order/1",
        content=body,
        headers={"Content-Type": "application/x-ndjson", "Idempotency-Key": f"at-once-{round_}"},
    )
    first = next(answer for answer in answers if answer.status_code == 202)
    assert retry.status_code == 202 and retry.content == first.content
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert api.usage()["daily-quota"] == 5000


def test_the_worker_deletes_expired_keys(server: str, redis_server: RedisServer, tmp_path: Any) -> None:
    key = issue_key(rate_limits="", quotas="1000/day").key
    api = Client(server, key)
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    for name in ("old", "fresh"):
        body = {"schema": "order/1", "instance": {"id": 1, "qty": 1}}
        assert api.http.post("/api/v1/validate", json=body, headers={"Idempotency-Key": name}).status_code == 200
    IdempotencyKey.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(seconds=1))
    env = service_env(
        REDIS_URL=redis_server.url, DATABASE_URL=database_url(), MEDIA_ROOT=str(tmp_path), **FAST_RECOVERY
    )
    with worker(env):
        wait_for(lambda: not IdempotencyKey.objects.filter(key="old").exists(), timeout=30)
    assert IdempotencyKey.objects.filter(key="fresh").exists()
