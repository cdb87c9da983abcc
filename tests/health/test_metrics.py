"""``/metrics``: Prometheus text, parsed by prometheus_client's own parser.

The end-to-end case runs the real gunicorn with two workers (multiprocess
mode, as ``python -m project.serve`` sets it up), replaces every worker
half-way, and finds every request counted exactly once.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client
from django.test.utils import override_settings

from tests.conftest import bearer
from tests.factories import issue_key
from tests.health.jobs import failed_validation_job
from tests.metrics_scrape import AUTH, TOKEN, requests_of, samples, value
from tests.processes import database_url, descendants, gunicorn, service_env
from tests.redis_server import RedisServer
from tests.validation.stack import wait_for

# --- end to end: two gunicorn workers, replaced half-way --------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_counts_are_exact_across_gunicorn_workers_and_their_restarts(redis_server: RedisServer, tmp_path: Any) -> None:
    roomy = issue_key(rate_limits="1000/s", quotas="100000/day").key
    tight = issue_key(rate_limits="3/m").key
    small = issue_key(rate_limits="1000/s", quotas="2/day").key
    env = service_env(REDIS_URL=redis_server.url, DATABASE_URL=database_url(), METRICS_TOKEN=TOKEN, WEB_CONCURRENCY="2")
    with gunicorn(env, workers=2) as base:
        master = _master_pid(base)

        def ping(key: str | None) -> int:
            headers = {"X-API-Key": key} if key else {}
            # A new connection each time, so both workers serve some.
            return httpx.get(f"{base}/api/v1/ping", headers=headers, timeout=10).status_code

        statuses = [ping(roomy) for _ in range(30)]
        statuses += [ping(tight) for _ in range(5)]
        # Replace both workers: what they counted must stay counted.
        before = _workers_of(master)
        for pid in before:
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: len(_workers_of(master) - before) == 2, timeout=60)
        wait_for(lambda: ping(None) == 401, timeout=60)
        statuses += [ping(roomy) for _ in range(30)]
        statuses += [ping(small) for _ in range(4)]
        statuses += [ping(None) for _ in range(2)]
        assert statuses.count(200) == 30 + 3 + 30 + 2

        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
        ping_route = {"route": "api/v1/ping", "method": "GET"}

        def scrape() -> dict[Any, float] | None:
            # Each worker writes its figures about once a second.
            response = httpx.get(f"{base}/metrics", headers=AUTH, timeout=10)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            found = samples(response.text)
            # Each worker writes its own figures: wait for every worker's.
            done = (
                requests_of(found, **ping_route, status="200") >= 65
                and requests_of(found, **ping_route, outcome="rate_limited") >= 2
                and requests_of(found, **ping_route, outcome="quota_exceeded") >= 2
                and requests_of(found, **ping_route, status="401") >= 3
                # and not in the middle of a worker's write.
                and value(found, "tollgate_http_request_duration_seconds_count", route="api/v1/ping")
                == requests_of(found, **ping_route)
            )
            return found if done else None

        found = wait_for(scrape, timeout=30, interval=0.5)
    assert requests_of(found, **ping_route, status="200", outcome="admitted") == 65
    assert requests_of(found, **ping_route, status="429", outcome="rate_limited") == 2
    assert requests_of(found, **ping_route, status="429", outcome="quota_exceeded") == 2
    # The probes of the wait above (one at least), and two more.
    assert requests_of(found, **ping_route, status="401", outcome="unauthenticated") >= 3
    unauthenticated = requests_of(found, **ping_route, outcome="unauthenticated")
    ping_total = 65 + 2 + 2 + unauthenticated
    assert value(found, "tollgate_http_request_duration_seconds_count", route="api/v1/ping") == ping_total
    assert value(found, "tollgate_http_request_duration_seconds_bucket", route="api/v1/ping", le="+Inf") == ping_total
    # Each rate-limited and quota-refused request took one round trip; the
    # admitted ones at most one each (leases serve some with none).
    trips = value(found, "tollgate_limiter_round_trip_seconds_count")
    assert 4 <= trips <= 4 + 65
    assert value(found, "tollgate_workers", state="live") == 0
    assert value(found, "tollgate_queue_depth", queue="validation") == 0
    assert value(found, "tollgate_scrape_part_up", part="rq") == 1


def _master_pid(base: str) -> int:
    port = int(base.rsplit(":", 1)[1])
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = path.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"project.serve" in cmdline and f"127.0.0.1:{port}".encode() in cmdline:
            return int(path.parent.name)
    raise AssertionError("gunicorn master not found")


def _workers_of(master: int) -> set[int]:
    return {pid for pid in descendants(master) if _is_gunicorn_worker(pid, master)}


def _is_gunicorn_worker(pid: int, master: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return int(fields[1]) == master and fields[0] != "Z"


# --- in one process ---------------------------------------------------------


@pytest.mark.django_db
def test_metrics_are_off_and_404_without_a_token(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_metrics_need_the_bearer_token(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_HOST="10.0.0.7")
    assert response.status_code == 200  # any Host: scrapers use internal addresses


@pytest.mark.django_db
def test_limiter_unavailable_and_redis_errors_are_counted(client: Client, own_redis: RedisServer) -> None:
    # Not pytest-django's `settings`: its teardown would bring own_redis's settings back.
    with override_settings(METRICS_TOKEN=TOKEN):
        _limiter_unavailable_and_redis_errors_are_counted(client, own_redis)


def _limiter_unavailable_and_redis_errors_are_counted(client: Client, own_redis: RedisServer) -> None:
    key = issue_key().key
    assert client.get("/api/v1/ping", **bearer(key)).status_code == 200
    before = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    own_redis.kill()
    assert client.get("/api/v1/ping", **bearer(key)).status_code == 503
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200  # the scrape answers with Redis down
    after = samples(response.content.decode())
    route = {"route": "api/v1/ping", "status": "503", "outcome": "limiter_unavailable"}
    assert requests_of(after, **route) - requests_of(before, **route) == 1
    errors = value(after, "tollgate_redis_errors_total", component="limiter")
    assert errors - value(before, "tollgate_redis_errors_total", component="limiter") >= 1
    assert value(after, "tollgate_scrape_part_up", part="rq") == 0
    assert value(after, "tollgate_scrape_part_up", part="jobs") == 1


@pytest.mark.django_db(transaction=True)
def test_jobs_are_counted_from_the_job_table(client: Client, settings: Any, tmp_path: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.MEDIA_ROOT = tmp_path
    failed_validation_job()
    found = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    assert value(found, "tollgate_jobs", status="failed") == 1
    assert value(found, "tollgate_jobs", status="queued") == 0
    # Its RQ entry is still queued (no worker took it): RQ's own figure, apart.
    assert value(found, "tollgate_queue_depth", queue="validation") == 1
    assert value(found, "tollgate_job_duration_seconds_count") == 0  # it never started
    assert value(found, "tollgate_accounts_near_quota", window="day") == 0


@pytest.mark.django_db
def test_webhook_deliveries_are_counted_from_their_table(client: Client, settings: Any) -> None:
    from webhooks.models import Delivery, DeliveryStatus, Endpoint

    settings.METRICS_TOKEN = TOKEN
    endpoint = Endpoint.objects.create(
        account=issue_key().api_key.account, url="https://hooks.example.com/t", events=["job.failed"], secret="s"
    )
    for status, attempts in [("pending", 0), ("pending", 2), ("pending", 1), ("succeeded", 1), ("failed", 9)]:
        Delivery.objects.create(endpoint=endpoint, event="job.failed", payload="{}", status=status, attempts=attempts)
    found = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    assert {status: value(found, "tollgate_webhook_deliveries", status=status) for status in DeliveryStatus.values} == {
        "pending": 3,
        "succeeded": 1,
        "failed": 1,
    }
    assert value(found, "tollgate_webhook_deliveries_retrying") == 2
    assert value(found, "tollgate_scrape_part_up", part="webhooks") == 1


@pytest.mark.django_db
def test_no_label_holds_a_key_an_account_or_a_path(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    issued = issue_key()
    client.get("/api/v1/ping", **bearer(issued.key))
    client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000", **bearer(issued.key))
    client.get("/no/such/path/123")
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    labels = {v for (name, got), _ in samples(text).items() for _, v in got}
    assert issued.api_key.prefix not in text
    assert "api/v1/jobs/<str:job_id>" in labels and "unmatched" in labels
    assert not any("00000000" in label or "/no/such" in label for label in labels)


@pytest.mark.django_db(transaction=True)
def test_job_durations_and_records_come_from_the_rows(client: Client, settings: Any, tmp_path: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from validation.models import ValidationJob

    settings.METRICS_TOKEN = TOKEN
    settings.MEDIA_ROOT = tmp_path
    start = timezone.now() - timedelta(hours=1)
    for seconds, valid, invalid in ((3, 2, 1), (40, 10, 0)):
        job = failed_validation_job()
        ValidationJob.objects.filter(pk=job.pk).update(
            status="succeeded",
            started_at=start,
            finished_at=start + timedelta(seconds=seconds),
            valid_count=valid,
            invalid_count=invalid,
        )
    found = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    assert value(found, "tollgate_jobs", status="succeeded") == 2
    assert value(found, "tollgate_job_duration_seconds_bucket", le="1.0") == 0
    assert value(found, "tollgate_job_duration_seconds_bucket", le="5.0") == 1
    assert value(found, "tollgate_job_duration_seconds_bucket", le="60.0") == 2
    assert value(found, "tollgate_job_duration_seconds_bucket", le="+Inf") == 2
    assert value(found, "tollgate_job_duration_seconds_sum") == pytest.approx(43)
    assert value(found, "tollgate_job_records_validated_total", result="valid") == 12
    assert value(found, "tollgate_job_records_validated_total", result="invalid") == 1


def test_a_recorder_writes_each_request_once_and_a_fork_never_writes() -> None:
    from project.metrics import REQUEST_SECONDS, REQUESTS, Recorder

    def total(route: str) -> float:
        return REQUESTS.labels(route, "GET", "200", "admitted")._value.get()  # type: ignore[attr-defined]

    recorder = Recorder()
    recorder.request("test/recorder", "GET", 200, "admitted", 0.003)
    recorder.request("test/recorder", "GET", 200, "admitted", 7.0)
    recorder.flush()
    recorder.flush()  # nothing new: nothing written twice
    assert total("test/recorder") == 2
    latency = REQUEST_SECONDS.labels("test/recorder")
    buckets = [bucket.get() for bucket in latency._buckets]  # type: ignore[attr-defined]
    assert sum(buckets) == 2 and buckets[2] == 1 and buckets[12] == 1  # le=0.005 and le=10
    assert latency._sum.get() == pytest.approx(7.003)  # type: ignore[attr-defined]

    recorder.request("test/recorder", "GET", 200, "admitted", 0.003)
    recorder._pid = os.getpid() + 1  # as in a forked child: the numbers are its parent's
    recorder.flush()
    assert total("test/recorder") == 2
