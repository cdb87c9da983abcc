"""DEMO_MODE: no Redis; jobs run on a thread of the web process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test.utils import override_settings

from quotas.backends import reset_backends
from tests.validation.conftest import ORDER_SCHEMA, Api
from tests.validation.data import ndjson, orders
from tests.validation.stack import wait_for
from validation import queue

MEMORY_CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture
def demo() -> Iterator[None]:
    reset_backends()
    queue._service.cache_clear()
    with override_settings(DEMO_MODE=True, CACHES=MEMORY_CACHES, REDIS_URL=""):
        yield
    reset_backends()
    queue._service.cache_clear()


@pytest.mark.django_db(transaction=True)
def test_demo_mode_runs_jobs_in_the_web_process(demo: None, media_root: Path) -> None:
    from tests.factories import issue_key

    api = Api(issue_key(rate_limits="", quotas="1000/day").key)
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    records, _invalid = orders(300, invalid_every=30)
    response = api.client.post("/api/v1/jobs?schema=order/1", ndjson(records), content_type="application/x-ndjson")
    assert response.status_code == 202
    url = response.json()["url"]
    job = wait_for(lambda: (body := api.get(url).json())["status"] == "succeeded" and body, timeout=30)
    assert job["summary"] == {"valid": 290, "invalid": 10}
    assert queue.get_queue_service().name == "memory"
