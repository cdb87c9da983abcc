"""The seed's matrix: Redis is mandatory unless DEMO_MODE=true.

Each case starts the real worker command (``manage.py rqworker``) or loads the
WSGI application in a fresh process, and reads what it logs.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.processes import ROOT, manage, service_env
from tests.redis_server import RedisServer, free_port

WSGI_LOAD = "import project.wsgi; print('SERVING')"


def load_wsgi(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WSGI_LOAD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_demo_mode_starts_without_redis_and_says_so() -> None:
    result = load_wsgi(service_env(DEMO_MODE="true"))
    assert result.returncode == 0, result.stderr
    assert "SERVING" in result.stdout
    assert "⚠ Using in-memory counters (DEMO_MODE)" in result.stderr
    assert "⚠ Using in-memory queue (DEMO_MODE)" in result.stderr


def test_missing_redis_url_refuses_to_start() -> None:
    result = load_wsgi(service_env())
    assert result.returncode != 0
    assert "SERVING" not in result.stdout
    assert "❌ Redis validation failed: REDIS_URL environment variable is required" in result.stderr


def test_bad_scheme_refuses_to_start() -> None:
    result = load_wsgi(service_env(REDIS_URL="http://127.0.0.1:6379/0"))
    assert result.returncode != 0
    assert "❌ Redis validation failed: REDIS_URL must start with redis://" in result.stderr


def test_unreachable_redis_refuses_after_retrying_briefly() -> None:
    port = free_port()  # nothing listens here
    started = time.monotonic()
    result = load_wsgi(service_env(REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/3", REDIS_STARTUP_WAIT="2"))
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert f"❌ Failed to connect to Redis at redis://:***@127.0.0.1:{port}/3" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "retrying" in result.stderr  # it did try more than once
    assert elapsed < 10


def test_reachable_redis_starts_and_logs_both_backends(redis_server: RedisServer) -> None:
    result = load_wsgi(service_env(REDIS_URL=redis_server.url))
    assert result.returncode == 0, result.stderr
    assert "SERVING" in result.stdout
    for line in (
        f"✓ Redis counter backend connected: 127.0.0.1:{redis_server.port}",
        "✓ Counter backend initialized",
        "✓ Redis queue service connected",
        "✓ Queue service initialized",
    ):
        assert line in result.stderr


def test_worker_refuses_without_redis_url() -> None:
    result = manage("rqworker", "validation", "--burst", env=service_env())
    assert result.returncode != 0
    assert "❌ Redis validation failed: REDIS_URL environment variable is required" in result.stderr


def test_worker_refuses_unreachable_redis() -> None:
    port = free_port()
    result = manage("rqworker", "validation", "--burst", env=service_env(REDIS_URL=f"redis://127.0.0.1:{port}/0"))
    assert result.returncode != 0
    assert f"❌ Failed to connect to Redis at redis://127.0.0.1:{port}/0" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_worker_starts_with_redis(redis_server: RedisServer) -> None:
    result = manage("rqworker", "validation", "--burst", env=service_env(REDIS_URL=redis_server.url))
    assert result.returncode == 0, result.stderr
    assert "✓ Redis queue service connected" in result.stderr


def test_runserver_refuses_without_redis_url() -> None:
    result = manage("runserver", "--noreload", f"127.0.0.1:{free_port()}", env=service_env(), timeout=30)
    assert result.returncode != 0
    assert "❌ Redis validation failed: REDIS_URL environment variable is required" in result.stderr


def test_runserver_with_autoreload_exits_instead_of_restarting() -> None:
    result = manage("runserver", f"127.0.0.1:{free_port()}", env=service_env(), timeout=30)
    assert result.returncode != 0
    assert result.stderr.count("❌ Redis validation failed") == 1
