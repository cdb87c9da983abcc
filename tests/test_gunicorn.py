"""The real gunicorn, as the Procfile runs it."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.processes import ROOT, gunicorn, gunicorn_command, service_env
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.e2e


def test_gunicorn_exits_without_redis_url_instead_of_booting_workers() -> None:
    started = time.monotonic()
    result = subprocess.run(
        gunicorn_command(free_port(), workers=2),
        cwd=ROOT,
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "❌ Redis validation failed: REDIS_URL environment variable is required" in result.stderr
    assert "Booting worker" not in result.stderr
    assert time.monotonic() - started < 30


def test_gunicorn_exits_when_redis_is_unreachable() -> None:
    port = free_port()
    result = subprocess.run(
        gunicorn_command(free_port(), workers=2),
        cwd=ROOT,
        env=service_env(REDIS_URL=f"redis://user:s3cret-pw@127.0.0.1:{port}/0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"❌ Failed to connect to Redis at redis://user:***@127.0.0.1:{port}/0" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Booting worker" not in result.stderr


@pytest.mark.django_db(transaction=True)
def test_health_follows_redis_down_and_back_without_restart(own_redis: RedisServer) -> None:
    from tests.processes import database_url

    env = service_env(REDIS_URL=own_redis.url, DATABASE_URL=database_url())
    with gunicorn(env, workers=2) as base:
        assert httpx.get(f"{base}/health").status_code == 200

        own_redis.kill()
        assert _until(lambda: httpx.get(f"{base}/health", timeout=5).status_code == 503, within=2.0)
        body = httpx.get(f"{base}/health").json()
        assert body["status"] == "unhealthy"
        assert body["redis"] == {"status": "disconnected", "backend": "redis", "topology": "url"}

        own_redis.start()
        assert _until(lambda: httpx.get(f"{base}/health", timeout=5).status_code == 200, within=2.0)
        assert httpx.get(f"{base}/health").json()["redis"]["status"] == "connected"


def _until(predicate, *, within: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
