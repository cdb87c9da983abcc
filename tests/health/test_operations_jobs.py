"""Validation jobs on the operations page: listed from the database, retried
or discarded by superusers through the validation app's services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.health.jobs import failed_validation_job
from tests.health.ops import DATA, PAGE, client_for, rq_queue, staff
from tests.redis_server import RedisServer

pytestmark = pytest.mark.django_db


# --- validation jobs: listing, retry and discard -------------------------


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    """Uploads go to a directory of this test."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def test_failed_jobs_are_listed_from_the_database(admin_client: Client) -> None:
    job = failed_validation_job()
    body = admin_client.get(DATA).json()
    assert body["jobs"]["counts"] == {"queued": 0, "running": 0, "succeeded": 0, "failed": 1, "cancelled": 0}
    (row,) = body["jobs"]["failed"]
    assert row["id"] == str(job.pk)
    assert (row["account"], row["schema"], row["records"]) == (job.account.name, "orders/1", 3)
    assert (row["error_code"], row["error"]) == ("internal_error", "The job failed on the server.")
    html = admin_client.get(PAGE).content.decode()
    assert f'id="ops-failed-{job.pk}"' in html
    assert f"/admin/health/operations/jobs/{job.pk}/retry/" in html
    assert f"/admin/django-rq/queues/0/validation-{job.pk}/" in html  # django-rq's own job page


def test_failed_jobs_are_listed_while_redis_is_down(admin_client: Client, own_redis: RedisServer) -> None:
    job = failed_validation_job()
    own_redis.kill()
    html = admin_client.get(PAGE).content.decode()
    assert "Redis unreachable" in html and f'id="ops-failed-{job.pk}"' in html


def test_staff_who_are_not_superusers_may_not_act() -> None:
    job = failed_validation_job()
    client = client_for(staff())
    html = client.get(PAGE).content.decode()
    assert f'id="ops-failed-{job.pk}"' in html and "Retry…" not in html
    for action in ("retry", "discard"):
        url = f"/admin/health/operations/jobs/{job.pk}/{action}/"
        assert client.get(url).status_code == 403
        assert client.post(url).status_code == 403
    job.refresh_from_db()
    assert job.status == "failed"


def _superuser_client() -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-12345-long"))
    return client


def _confirm(client: Client, url: str) -> str:
    """GET the confirmation page and return its CSRF token."""
    response = client.get(url)
    assert response.status_code == 200
    assert "Yes, " in response.content.decode()
    return response.context["csrf_token"]


def test_superuser_retries_a_failed_job_after_confirming(
    redis_server: RedisServer, django_capture_on_commit_callbacks: Any
) -> None:
    job = failed_validation_job()
    client = _superuser_client()
    url = f"/admin/health/operations/jobs/{job.pk}/retry/"
    token = _confirm(client, url)
    assert client.post(url).status_code == 403  # no CSRF token
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"csrfmiddlewaretoken": token}, follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    assert f"Job {job.pk} retried: it is queued again." in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.error, job.finished_at, job.processed) == ("queued", None, None, 0)
    assert job.upload  # kept: the run reads it
    assert rq_queue(redis_server).job_ids == [job.rq_id]
    # Again: nothing to do, and it says so.
    response = client.post(url, {"csrfmiddlewaretoken": token}, follow=True)
    assert "is not a failed job that can be retried" in response.content.decode()


def test_superuser_discards_a_failed_job(settings: Any) -> None:
    job = failed_validation_job()
    upload = Path(settings.MEDIA_ROOT) / job.upload
    assert upload.exists()
    client = _superuser_client()
    url = f"/admin/health/operations/jobs/{job.pk}/discard/"
    token = _confirm(client, url)
    response = client.post(url, {"csrfmiddlewaretoken": token}, follow=True)
    assert f"Job {job.pk} discarded" in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.upload) == ("failed", "")
    assert not upload.exists()
    assert f'id="ops-failed-{job.pk}"' not in response.content.decode()


def test_unknown_action_or_job(admin_client: Client) -> None:
    assert admin_client.get("/admin/health/operations/jobs/abc/restart/").status_code == 404
    response = admin_client.post("/admin/health/operations/jobs/not-a-uuid/retry/", follow=True)
    assert response.status_code == 200
    assert "is not a failed job that can be retried" in response.content.decode()


def test_retry_with_redis_down_leaves_the_job_queued_for_recovery(own_redis: RedisServer) -> None:
    job = failed_validation_job()
    own_redis.kill()
    client = _superuser_client()
    url = f"/admin/health/operations/jobs/{job.pk}/retry/"
    response = client.post(url, {"csrfmiddlewaretoken": _confirm(client, url)}, follow=True)
    assert response.status_code == 200 and "retried" in response.content.decode()
    job.refresh_from_db()
    assert job.status == "queued"  # recovery hands it to RQ once Redis is back
