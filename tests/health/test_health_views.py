from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import override_settings

import project
from project.redis import cache_config
from tests.redis_server import RedisServer

# /health asks the database too.
pytestmark = pytest.mark.django_db


def test_health__healthy(client: Client, redis_server: RedisServer) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"] and "max-age=0" in response["Cache-Control"]
    assert response.json() == {
        "status": "healthy",
        "version": project.__version__,
        "environment": "test",
        "database": {"status": "connected", "backend": connection.vendor},
        "redis": {"status": "connected", "backend": "redis", "topology": "url"},
        "queue": {
            "status": "connected",
            "backend": "redis",
            "queue_depth": 0,
            "jobs_waiting": 0,
            "live_workers": 0,
            "lost_workers": 0,
            "topology": "url",
            "shared_with_counters": True,
        },
        "warnings": [],
    }


def test_health__queue_depth_counts_waiting_jobs(client: Client, redis_server: RedisServer) -> None:
    import django_rq

    queue = django_rq.get_queue("validation", commit_mode="auto")
    for _ in range(3):
        queue.enqueue("builtins.print")
    assert client.get("/health").json()["queue"]["queue_depth"] == 3


def test_health__redis_killed(client: Client, own_redis: RedisServer) -> None:
    own_redis.kill()
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["redis"] == {"status": "disconnected", "backend": "redis", "topology": "url"}
    assert body["queue"] == {
        "status": "disconnected",
        "backend": "redis",
        "queue_depth": None,
        "topology": "url",
        "shared_with_counters": True,
    }


def test_health__redis_hung_answers_within_a_second(client: Client, own_redis: RedisServer) -> None:
    assert client.get("/health").status_code == 200  # pooled connections exist
    own_redis.pause()
    try:
        started = time.monotonic()
        response = client.get("/health")
        elapsed = time.monotonic() - started
    finally:
        own_redis.resume()
    assert response.status_code == 503
    assert elapsed < 1.0
    assert client.get("/health").status_code == 200


def test_health__demo_mode_reports_memory_backends(client: Client) -> None:
    with override_settings(
        DEMO_MODE=True, CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ):
        response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["redis"] == {"status": "connected", "backend": "memory"}
    assert body["queue"] == {"status": "connected", "backend": "memory", "queue_depth": 0}


def test_health_live__needs_nothing(client: Client, own_redis: RedisServer) -> None:
    own_redis.kill()
    assert client.get("/health/live").status_code == 200


def test_health_ready__same_verdict_as_health(client: Client, own_redis: RedisServer) -> None:
    assert client.get("/health/ready").status_code == 200
    own_redis.kill()
    assert client.get("/health/ready").status_code == 503


@pytest.mark.django_db
class TestAdminRedisReport:
    url = "/admin/health/redis"

    def test_anonymous_api_client_gets_401(self, client: Client) -> None:
        response = client.get(self.url)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "authentication_required"
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_anonymous_browser_is_sent_to_login(self, client: Client) -> None:
        response = client.get(self.url, HTTP_ACCEPT="text/html")
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")

    def test_wrong_token_gets_401(self, client: Client) -> None:
        with override_settings(HEALTH_TOKEN="right-token"):
            response = client.get(self.url, HTTP_AUTHORIZATION="Bearer wrong-token")
        assert response.status_code == 401

    def test_no_token_configured_refuses_any_bearer(self, client: Client) -> None:
        assert client.get(self.url, HTTP_AUTHORIZATION="Bearer ").status_code == 401

    def test_non_staff_user_gets_403(self, client: Client) -> None:
        client.force_login(User.objects.create_user("pat", password="x"))
        assert client.get(self.url).status_code == 403

    def test_token_reads_the_report(self, client: Client, redis_server: RedisServer) -> None:
        with override_settings(HEALTH_TOKEN="right-token"):
            response = client.get(self.url, HTTP_AUTHORIZATION="Bearer right-token")
        assert response.status_code == 200
        body = response.json()
        assert body["demo_mode"] is False
        assert body["counter_backend"] == {"status": "connected", "backend": "redis"}
        assert body["queue_service"] == {"status": "connected", "backend": "redis", "queue_depth": 0}
        redis = body["redis"]
        assert redis["address"] == f"127.0.0.1:{redis_server.port}"
        assert redis["version"].count(".") == 2
        assert redis["connected_clients"] >= 1
        assert redis["used_memory"] > 0
        assert redis["persistence"] == {"rdb": False, "aof": False}
        assert 0 <= redis["ping_ms"] < 1000

    def test_staff_session_reads_the_report(self, admin_client: Client) -> None:
        assert admin_client.get(self.url).status_code == 200

    def test_password_never_shown(self, admin_client: Client) -> None:
        server = RedisServer(password="pa55-w0rd-xyz").start()
        try:
            with override_settings(REDIS_URL=server.url, CACHES={"default": cache_config(server.url)}):
                response = admin_client.get(self.url)
        finally:
            server.stop()
        assert response.status_code == 200
        assert b"pa55-w0rd-xyz" not in response.content

    def test_redis_down_is_503_with_details_not_500(self, admin_client: Client, own_redis: RedisServer) -> None:
        own_redis.kill()
        response = admin_client.get(self.url)
        assert response.status_code == 503
        body = response.json()
        assert body["counter_backend"]["status"] == "disconnected"
        assert body["redis"]["status"] == "disconnected"
