"""Redis that lost its data is said so: /admin/health/redis, the operations
page, and ``manage.py check --deploy``'s warnings about persistence."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import Client
from django.test.utils import override_settings

from project.redis import cache_config
from quotas.backends import get_backend
from quotas.flusher import Flusher
from tests.redis_server import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)


def test_counters_restored_at_after_redis_lost_its_data(admin_client: Client, own_redis: RedisServer) -> None:
    report = admin_client.get("/admin/health/redis").json()
    assert report["counters_restored_at"] is None and report["last_flush_at"] is None
    page = admin_client.get("/admin/health/operations/").content.decode()
    assert 'id="ops-counters-restored"' not in page

    Flusher(backend=get_backend).flush()
    own_redis.restart()
    Flusher(backend=get_backend).flush()

    report = admin_client.get("/admin/health/redis").json()
    assert report["counters_restored_at"].endswith("Z")
    page = admin_client.get("/admin/health/operations/").content.decode()
    assert 'id="ops-counters-restored"' in page and "Redis lost its data" in page


def deploy_warnings() -> set[str]:
    return {message.id for message in run_checks(include_deployment_checks=True) if message.id.startswith("quotas.")}


def test_check_deploy_warns_about_a_redis_that_keeps_nothing_and_evicts(own_redis: RedisServer) -> None:
    client = own_redis.client()
    assert deploy_warnings() == {"quotas.W001"}  # the suite's servers keep nothing on disk
    client.config_set("maxmemory-policy", "allkeys-lru")
    assert deploy_warnings() == {"quotas.W001", "quotas.W002"}
    client.config_set("appendonly", "yes")
    client.config_set("maxmemory-policy", "noeviction")
    assert deploy_warnings() == set()
    client.config_set("appendonly", "no")
    client.config_set("save", "3600 1")
    assert deploy_warnings() == set()


def test_check_deploy_stays_quiet_about_durability_without_redis(own_redis: RedisServer) -> None:
    own_redis.kill()
    assert deploy_warnings() == set()  # unreachable is project.E003's error
    with override_settings(DEMO_MODE=True):
        assert deploy_warnings() == set()


def test_check_deploy_on_the_default_url_is_about_this_redis(redis_server: RedisServer) -> None:
    with override_settings(REDIS_URL=redis_server.url, CACHES={"default": cache_config(redis_server.url)}):
        assert "quotas.W001" in deploy_warnings()
