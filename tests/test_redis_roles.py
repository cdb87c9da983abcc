"""Two Redis roles, configured apart: the counters (REDIS_URL, or Sentinel, or
a Cluster) and the queue (QUEUE_REDIS_URL, else the counters' own). Each is
reported by the startup gate, /health, /admin/health/redis and the
operations page, and a queue Redis that is down leaves the API metered."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import django_rq
import pytest
from django.test import Client
from django.test.utils import override_settings

from project.redis import caches, counters_role, queue_is_split, queue_role, roles
from tests.conftest import bearer
from tests.processes import manage, service_env
from tests.redis_server import RedisServer, free_port
from tests.test_redis_mandatory import load_wsgi

pytestmark = pytest.mark.django_db


def _split(counters: RedisServer, queue: RedisServer) -> override_settings:
    source = SimpleNamespace(REDIS_URL=counters.url, QUEUE_REDIS_URL=queue.url)
    return override_settings(
        REDIS_URL=counters.url,
        QUEUE_REDIS_URL=queue.url,
        CACHES=caches(source),
        RQ_QUEUES={"validation": {"USE_REDIS_CACHE": "queue", "DEFAULT_TIMEOUT": 3600}},
    )


@pytest.fixture
def split(own_redis: RedisServer) -> Iterator[tuple[RedisServer, RedisServer]]:
    """The counters on ``own_redis``, the queue on a server of its own."""
    queue = RedisServer().start()
    try:
        with _split(own_redis, queue):
            yield own_redis, queue
    finally:
        queue.stop()


# --- Configuration -------------------------------------------------------


def test_the_queue_defaults_to_the_counters_configuration_whatever_its_form() -> None:
    by_url = SimpleNamespace(REDIS_URL="redis://:pw@10.0.0.1:6380/2")
    assert queue_role(by_url).kind == "url" and queue_role(by_url).url == by_url.REDIS_URL
    assert not queue_is_split(by_url)
    sentinel = SimpleNamespace(REDIS_SENTINELS="10.0.0.1:26379, 10.0.0.2:26379", REDIS_SENTINEL_MASTER="main")
    queue = queue_role(sentinel)
    assert (queue.kind, queue.master, queue.nodes) == ("sentinel", "main", (("10.0.0.1", 26379), ("10.0.0.2", 26379)))
    assert caches(sentinel)["queue"] == caches(sentinel)["default"]
    own_master = SimpleNamespace(**vars(sentinel), QUEUE_REDIS_SENTINEL_MASTER="jobs")
    assert queue_role(own_master).master == "jobs" and counters_role(own_master).master == "main"
    assert queue_is_split(own_master)
    assert caches(own_master)["queue"]["LOCATION"] == "redis://jobs/0"


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"REDIS_CLUSTER_NODES": "127.0.0.1:7000"}, "QUEUE_REDIS_URL is required with REDIS_CLUSTER_NODES"),
        ({"REDIS_SENTINELS": "127.0.0.1:26379"}, "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINELS": "127.0.0.1"}, "REDIS_SENTINELS must list host:port pairs"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_SENTINELS": "127.0.0.1:2"}, "set only one of"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0", "QUEUE_REDIS_URL": "http://x"}, "QUEUE_REDIS_URL must start with"),
        (
            {"REDIS_URL": "redis://127.0.0.1:1/0", "QUEUE_REDIS_SENTINEL_MASTER": "jobs"},
            "QUEUE_REDIS_SENTINEL_MASTER needs",
        ),
    ],
)
def test_a_configuration_that_cannot_work_says_why(variables: dict[str, str], problem: str) -> None:
    counters, queue = roles(SimpleNamespace(**variables))
    assert any((role.problem or "").startswith(problem) for role in (counters, queue))


def test_the_startup_gate_refuses_a_configuration_that_cannot_work() -> None:
    result = load_wsgi(service_env(REDIS_SENTINELS="127.0.0.1:26379"))
    assert result.returncode != 0
    assert "❌ Redis validation failed: REDIS_SENTINELS needs REDIS_SENTINEL_MASTER" in result.stderr


def test_the_startup_gate_reports_each_role(redis_server: RedisServer, own_redis: RedisServer) -> None:
    result = load_wsgi(service_env(REDIS_URL=redis_server.url, QUEUE_REDIS_URL=own_redis.url))
    assert result.returncode == 0, result.stderr
    assert f"✓ Redis counter backend connected: 127.0.0.1:{redis_server.port}" in result.stderr
    assert f"✓ Redis queue service connected: 127.0.0.1:{own_redis.port} (its own Redis)" in result.stderr
    shared = load_wsgi(service_env(REDIS_URL=redis_server.url))
    assert f"✓ Redis queue service connected: 127.0.0.1:{redis_server.port} (shared with the counters)" in shared.stderr


def test_the_startup_gate_refuses_an_unreachable_queue_redis(redis_server: RedisServer) -> None:
    port = free_port()
    env = service_env(REDIS_URL=redis_server.url, QUEUE_REDIS_URL=f"redis://:q-secret@127.0.0.1:{port}/1")
    result = load_wsgi(env)
    assert result.returncode != 0
    assert "✓ Redis counter backend connected" in result.stderr
    assert f"❌ Failed to connect to Redis at redis://:***@127.0.0.1:{port}/1" in result.stderr
    assert "q-secret" not in result.stderr


# --- Apart at run time ---------------------------------------------------


def test_jobs_go_to_the_queue_redis_and_counters_to_the_counters_redis(
    split: tuple[RedisServer, RedisServer], client: Client, api_key: str
) -> None:
    counters, queue = split
    assert client.get("/api/v1/ping", **bearer(api_key)).status_code == 200
    django_rq.get_queue("validation", commit_mode="auto").enqueue("builtins.print", "hello")
    assert queue.client().llen("rq:queue:validation") == 1
    assert counters.client().llen("rq:queue:validation") == 0
    assert any(key.startswith(b"tg:{a") for key in counters.client().keys())
    assert not any(key.startswith(b"tg:{a") for key in queue.client().keys())


def test_health_reports_each_role_and_a_dead_queue_leaves_the_counters_up(
    split: tuple[RedisServer, RedisServer], client: Client, api_key: str
) -> None:
    _, queue = split
    body = client.get("/health").json()
    assert body["redis"] == {"status": "connected", "backend": "redis", "topology": "url"}
    assert body["queue"]["shared_with_counters"] is False
    queue.kill()
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["redis"]["status"] == "connected"
    assert body["queue"] == {
        "status": "disconnected",
        "backend": "redis",
        "queue_depth": None,
        "topology": "url",
        "shared_with_counters": False,
    }
    # The API is metered on the counters' Redis, which still answers.
    assert client.get("/api/v1/ping", **bearer(api_key)).status_code == 200


def test_health_reports_a_dead_counters_redis_apart_from_a_live_queue(
    split: tuple[RedisServer, RedisServer], client: Client
) -> None:
    counters, _ = split
    counters.kill()
    body = client.get("/health").json()
    assert body["redis"]["status"] == "disconnected"
    assert body["queue"]["status"] == "connected" and body["queue"]["queue_depth"] == 0


def test_admin_report_shows_each_role_server(split: tuple[RedisServer, RedisServer], admin_client: Client) -> None:
    counters, queue = split
    body = admin_client.get("/admin/health/redis").json()
    assert body["redis"]["role"] == "counters" and body["redis"]["address"] == f"127.0.0.1:{counters.port}"
    assert body["redis"]["topology"] == "url" and body["redis"]["status"] == "connected"
    assert body["queue_redis"]["role"] == "queue" and body["queue_redis"]["address"] == f"127.0.0.1:{queue.port}"
    assert body["queue_redis"]["shared_with_counters"] is False
    assert body["queue_redis"]["status"] == "connected" and body["queue_redis"]["version"].count(".") == 2
    queue.kill()
    body = admin_client.get("/admin/health/redis").json()
    assert body["status"] == "unhealthy"
    assert body["redis"]["status"] == "connected"
    assert body["queue_redis"]["status"] == "disconnected"


def test_admin_report_of_one_shared_redis(redis_server: RedisServer, admin_client: Client) -> None:
    body = admin_client.get("/admin/health/redis").json()
    assert body["queue_redis"] == {
        "role": "queue",
        "topology": "url",
        "address": f"127.0.0.1:{redis_server.port}",
        "tls": False,
        "shared_with_counters": True,
    }


def test_operations_page_shows_each_role(split: tuple[RedisServer, RedisServer], admin_client: Client) -> None:
    counters, queue = split
    redis = admin_client.get("/admin/health/operations/data.json").json()["redis"]
    assert redis["connected"] is True
    assert redis["address"] == f"127.0.0.1:{counters.port}" and redis["topology"] == "url"
    assert redis["queue"]["address"] == f"127.0.0.1:{queue.port}"
    html = admin_client.get("/admin/health/operations/").content.decode()
    assert f"127.0.0.1:{queue.port}" in html


def test_passwords_of_both_roles_never_shown(admin_client: Client, own_redis: RedisServer) -> None:
    queue = RedisServer(password="queue-pw-9876").start()
    try:
        with _split(own_redis, queue):
            responses = [admin_client.get(path) for path in ("/admin/health/redis", "/health")]
            responses.append(admin_client.get("/admin/health/operations/data.json"))
    finally:
        queue.stop()
    for response in responses:
        assert response.status_code == 200, response.content
        assert b"queue-pw-9876" not in response.content


def test_the_worker_takes_its_jobs_from_the_queue_redis(redis_server: RedisServer, own_redis: RedisServer) -> None:
    own_redis.client().rpush("rq:queue:validation", "no-such-job")  # a worker drops an entry with no job
    env = service_env(REDIS_URL=redis_server.url, QUEUE_REDIS_URL=own_redis.url)
    result = manage("rqworker", "validation", "--burst", env=env)
    assert result.returncode == 0, result.stderr
    assert f"✓ Redis queue service connected: 127.0.0.1:{own_redis.port} (its own Redis)" in result.stderr
    assert own_redis.client().llen("rq:queue:validation") == 0


def test_operations_page_with_the_queue_redis_down(
    split: tuple[RedisServer, RedisServer], admin_client: Client
) -> None:
    _, queue = split
    queue.kill()
    data = admin_client.get("/admin/health/operations/data.json").json()
    assert data["redis_unreachable"] is False and data["queue_redis_unreachable"] is True
    assert data["redis"]["connected"] is True and data["redis"]["queue"]["connected"] is False
    assert data["queues_error"]
    html = admin_client.get("/admin/health/operations/").content.decode()
    assert 'id="ops-queue-redis-banner"' in html and 'id="ops-redis-banner"' not in html
