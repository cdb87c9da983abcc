"""django-rq's dashboard needs "Can manage queues" on every view, the POST
actions (empty, delete, requeue, enqueue, stop) included."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import URLPattern

from health import rq_dashboard
from tests.health import rq_jobs
from tests.health.ops import client_for, rq_queue
from tests.redis_server import RedisServer

pytestmark = pytest.mark.django_db

PREFIX = "/admin/django-rq/"
SAMPLES = {
    "queue_index": "0",
    "scheduler_index": "0",
    "connection_index": "0",
    "job_id": "some-job",
    "result_id": "some-result",
    "key": "some-worker",
    "scheduler_name": "some-scheduler",
    "cron_job_name": "some/cron",
    "token": "nottoken",
}


def urls() -> list[str]:
    """One URL per dashboard view, its parameters filled in."""
    found = []
    for pattern in rq_dashboard.urlpatterns:
        assert isinstance(pattern, URLPattern)
        route = str(pattern.pattern).lstrip("^").rstrip("$")
        route = re.sub(r"\(\?P<(\w+)>[^)]*\)\??", lambda m: SAMPLES[m.group(1)], route)
        route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLES[m.group(1)], route)
        found.append(PREFIX + route.replace("/?", "/"))
    return sorted(set(found))


def user(name: str, *, manage: bool = False, superuser: bool = False) -> User:
    account = User.objects.create_user(name, password="pw-12345-long", is_staff=True, is_superuser=superuser)
    if manage:
        account.user_permissions.add(Permission.objects.get(codename="manage_queues"))
    return account


def test_every_view_and_action_refuses_staff_without_the_permission() -> None:
    client = client_for(user("sam"))
    views = urls()
    assert len(views) >= 20  # every view django-rq has: pages, actions, statistics
    for url in views:
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code == 403, (method, url, response.status_code)


def test_without_a_session_the_pages_send_to_the_login_and_the_statistics_want_the_token(client: Client) -> None:
    for url in urls():
        response = client.get(url)
        if "stats.json" in url or "metrics" in url:
            assert response.status_code in (401, 404), url  # django-rq's own token check
        else:
            assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url


@pytest.mark.parametrize("who", ["manager", "superuser"])
def test_with_the_permission_the_dashboard_and_its_actions_work(redis_server: RedisServer, who: str) -> None:
    queue = rq_queue(redis_server)
    queue.enqueue(rq_jobs.succeed)
    client = client_for(user(who, manage=who == "manager", superuser=who == "superuser"))
    assert client.get(PREFIX).status_code == 200
    assert client.get(f"{PREFIX}queues/0/").status_code == 200
    assert client.get(f"{PREFIX}stats.json").status_code == 200
    assert queue.count == 1
    assert client.post(f"{PREFIX}queues/0/empty/").status_code == 302
    assert queue.count == 0


def test_an_action_refused_changes_nothing(redis_server: RedisServer) -> None:
    queue = rq_queue(redis_server)
    job: Any = queue.enqueue(rq_jobs.succeed)
    client = client_for(user("sam"))
    assert client.post(f"{PREFIX}queues/0/empty/").status_code == 403
    assert client.post(f"{PREFIX}queues/0/{job.id}/delete/").status_code == 403
    assert queue.count == 1 and queue.job_ids == [job.id]
