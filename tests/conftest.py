"""Shared fixtures: private Redis servers, clean state, keys and clients.

Every test runs against a real redis-server that the suite started on a free
loopback port. Tests that break Redis on purpose (kill, pause, restart) take
``own_redis``, a server of their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test.utils import override_settings

from project.database import outage
from project.redis import cache_config
from quotas.meter import process_meter
from tests.redis_server import RedisServer
from tests.s3_server import S3Server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _session_redis(redis_server: RedisServer) -> Iterator[None]:
    with override_settings(REDIS_URL=redis_server.url, CACHES={"default": cache_config(redis_server.url)}):
        yield


@pytest.fixture(autouse=True)
def _fresh_state(redis_server: RedisServer) -> Iterator[None]:
    """Each test starts with empty counters and a new process meter (no
    cached records, breaker closed, no leases)."""
    redis_server.client().flushall()  # the suite's own server, never a shared one
    process_meter.cache_clear()
    outage.reset()
    yield
    process_meter().leases.drop()
    process_meter.cache_clear()
    outage.reset()


@pytest.fixture
def own_redis(settings: object) -> Iterator[RedisServer]:
    """A private Redis for this test alone, which it may kill, pause or restart."""
    server = RedisServer().start()
    with override_settings(REDIS_URL=server.url, CACHES={"default": cache_config(server.url)}):
        yield server
    server.stop()


@pytest.fixture
def api_key(db: None) -> str:
    """A usable key on a plan of 100/m and 10000/day (full key string)."""
    from tests.factories import issue_key

    return issue_key().key


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The suite's S3-compatible server (moto), started when a test first
    needs it. Tests pause and resume it, never stop it; each uses buckets of
    its own."""
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def own_s3() -> Iterator[S3Server]:
    """An S3-compatible server for this test alone, which it may stop."""
    server = S3Server().start()
    yield server
    server.stop()
