"""The operations page (admin, staff only) and its JSON, against the suite's
private Redis and real RQ workers (run in this process, on their own
connection)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.test.utils import override_settings
from django_redis import get_redis_connection
from rq import SimpleWorker

from health.operations import take_snapshot
from project.redis import cache_config
from tests.conftest import bearer
from tests.factories import issue_key
from tests.health import rq_jobs
from tests.health.ops import DATA, PAGE, client_for, rq_queue, staff
from tests.redis_server import RedisServer

pytestmark = pytest.mark.django_db

# --- who may see it -------------------------------------------------------


def test_anonymous_is_sent_to_the_admin_login(client: Client) -> None:
    for url in (PAGE, DATA):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_staff_without_the_permission_gets_403_and_no_link() -> None:
    client = client_for(staff(allowed=False))
    assert client.get(PAGE).status_code == 403
    assert client.get(DATA).status_code == 403
    assert PAGE.encode() not in client.get("/admin/").content


def test_staff_with_the_permission_sees_the_page_linked_from_the_index() -> None:
    client = client_for(staff())
    assert PAGE.encode() in client.get("/admin/").content
    response = client.get(PAGE)
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    html = response.content.decode()
    for heading in ("Queues", "Workers", "Redis", "Requests per minute", "Top keys", "Usage per account"):
        assert heading in html
    assert 'src="/static/health/operations.js"' in html
    assert "cdn" not in html.lower()


def test_the_script_is_served_from_the_project(client: Client) -> None:
    response = client.get("/static/health/operations.js")
    assert response.status_code == 200
    assert b"fetch(" in response.getvalue()


def test_nothing_can_be_added_changed_or_deleted(admin_client: Client) -> None:
    assert admin_client.get("/admin/health/operations/add/").status_code == 404
    assert admin_client.get("/admin/health/operations/1/change/").status_code == 404


# --- queues and workers ---------------------------------------------------


def test_queue_counts_and_a_busy_worker_from_real_rq(admin_client: Client, redis_server: RedisServer) -> None:
    queue = rq_queue(redis_server)
    queue.enqueue("tests.health.rq_jobs.fail")
    hook_job = queue.enqueue("tests.health.rq_jobs.call_hook")
    queue.enqueue("tests.health.rq_jobs.succeed")
    queue.enqueue("tests.health.rq_jobs.succeed")
    later = queue.enqueue_in(timedelta(hours=1), "tests.health.rq_jobs.succeed")
    queue.enqueue("tests.health.rq_jobs.succeed", depends_on=later)

    rq_jobs.seen.clear()
    rq_jobs.hook = lambda: admin_client.get(DATA).json()
    try:
        SimpleWorker([queue], connection=queue.connection, name="w-busy").work(burst=True)
    finally:
        rq_jobs.hook = None

    during = rq_jobs.seen[0]
    # Every queue of RQ_QUEUES has a row; this test filled the validation one.
    assert [queue["name"] for queue in during["queues"]] == ["validation", "webhooks"]
    row = during["queues"][0]
    assert {k: row[k] for k in ("queued", "started", "scheduled", "deferred", "failed", "finished")} == {
        "queued": 2,
        "started": 1,
        "scheduled": 1,
        "deferred": 1,
        "failed": 1,
        "finished": 0,
    }
    (worker,) = during["workers"]
    assert worker["name"] == "w-busy"
    assert worker["state"] == "busy"
    assert worker["current_job"] == hook_job.id
    assert worker["alive"] is True
    assert 0 <= worker["heartbeat_age"] < 5
    assert worker["queues"] == ["validation"]

    after = admin_client.get(DATA).json()
    row = after["queues"][0]  # validation; the webhooks queue is empty
    assert (row["queued"], row["started"], row["finished"], row["failed"]) == (0, 0, 3, 1)
    assert after["workers"] == []  # a burst worker unregisters when it ends


def test_oldest_queued_job_age(admin_client: Client, redis_server: RedisServer) -> None:
    rq_queue(redis_server).enqueue("tests.health.rq_jobs.succeed")
    snapshot = take_snapshot(now=time.time() + 90)
    assert snapshot.rq is not None
    assert 89 <= snapshot.rq.queues[0].oldest_age <= 92
    html = admin_client.get(PAGE).content.decode()
    assert 'class="ops-queued">1<' in html


def test_warning_when_jobs_wait_and_no_worker_is_alive(admin_client: Client, redis_server: RedisServer) -> None:
    assert "No worker is alive" not in admin_client.get(PAGE).content.decode()  # nothing waits
    queue = rq_queue(redis_server)
    queue.enqueue("tests.health.rq_jobs.succeed")
    response = admin_client.get(PAGE)
    assert "No worker is alive while 1 job waits" in response.content.decode()
    assert admin_client.get(DATA).json()["no_worker_while_jobs_wait"] is True

    worker = SimpleWorker([queue], connection=queue.connection, name="w-idle")
    worker.register_birth()
    try:
        body = admin_client.get(DATA).json()
        assert body["no_worker_while_jobs_wait"] is False
        assert [w["name"] for w in body["workers"]] == ["w-idle"]
    finally:
        worker.register_death()


def test_reading_workers_leaves_the_shared_timeouts_alone(admin_client: Client, redis_server: RedisServer) -> None:
    queue = rq_queue(redis_server)
    worker = SimpleWorker([queue], connection=queue.connection, name="w-timeouts")
    worker.register_birth()
    try:
        assert admin_client.get(DATA).json()["workers"][0]["name"] == "w-timeouts"
    finally:
        worker.register_death()
    # rq's Worker() would have raised it to minutes (its dequeue timeout).
    assert get_redis_connection("default").connection_pool.connection_kwargs["socket_timeout"] == 0.25


def test_the_page_only_reads_redis(admin_client: Client, redis_server: RedisServer) -> None:
    queue = rq_queue(redis_server)
    queue.enqueue("tests.health.rq_jobs.succeed")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)  # a finished job, a dead worker
    queue.enqueue("tests.health.rq_jobs.succeed")
    key = issue_key().key
    Client().get("/api/v1/ping", **bearer(key))
    observer = redis_server.client()
    observer.config_resetstat()
    assert admin_client.get(PAGE).status_code == 200
    assert admin_client.get(DATA).status_code == 200
    stats = observer.info("commandstats")
    names = [name.removeprefix("cmdstat_") for name in stats]
    assert {"llen", "zcard", "hmget", "smembers"} <= set(names)
    for name in names:
        if name in ("config|resetstat", "info"):  # the observer's own
            continue
        (info,) = observer.execute_command("COMMAND", "INFO", name).values()
        flags = {flag.decode() if isinstance(flag, bytes) else flag for flag in info["flags"]}
        assert flags and "write" not in flags, (name, flags)


# --- Redis facts ----------------------------------------------------------


def test_redis_facts(admin_client: Client, redis_server: RedisServer) -> None:
    redis = admin_client.get(DATA).json()["redis"]
    assert redis["connected"] is True
    assert redis["address"] == f"127.0.0.1:{redis_server.port}"
    server = redis["server"]
    assert server["version"].count(".") == 2
    assert server["used_memory"] > 0 and server["connected_clients"] >= 1
    assert server["persistence"] == {"rdb": False, "aof": False}
    assert 0 <= server["ping_ms"] < 1000
    assert redis["connection"]["socket_timeout"] == 0.25
    html = admin_client.get(PAGE).content.decode()
    assert server["version"] in html and "RDB off, AOF off" in html


def test_redis_password_never_shown(admin_client: Client) -> None:
    server = RedisServer(password="s3cret-pw-ops").start()
    try:
        with override_settings(REDIS_URL=server.url, CACHES={"default": cache_config(server.url)}):
            page, data = admin_client.get(PAGE), admin_client.get(DATA)
    finally:
        server.stop()
    assert page.status_code == data.status_code == 200
    assert data.json()["redis"]["connected"] is True
    for response in (page, data):
        assert b"s3cret-pw-ops" not in response.content
    assert b"password" not in data.content.lower()  # not even the name of the field


# --- usage ----------------------------------------------------------------


def test_usage_top_keys_and_requests_per_minute(admin_client: Client) -> None:
    busy = issue_key(name="busy-plan", quotas="1000/day, 20000/month")
    quiet = issue_key(account=busy.api_key.account)
    other = issue_key(rate_limits="", quotas="")
    api = Client()
    for _ in range(3):
        assert api.get("/api/v1/ping", **bearer(busy.key)).status_code == 200
    assert api.get("/api/v1/ping", **bearer(quiet.key)).status_code == 200
    assert api.get("/api/v1/ping", **bearer(other.key)).status_code == 200

    body = admin_client.get(DATA).json()
    rows = {row["name"]: row for row in body["accounts"]}
    busy_row = rows[busy.api_key.account.name]
    assert busy_row["plan"] == "busy-plan"
    assert busy_row["today"] == {"used": 4, "quota": 1000}
    assert busy_row["month"] == {"used": 4, "quota": 20000}
    # A plan without quotas counts no units: nothing to show but its requests.
    assert rows[other.api_key.account.name]["today"] == {"used": None, "quota": None}
    assert body["accounts"][0]["name"] == busy.api_key.account.name  # busiest first
    assert (body["top_keys"][0]["prefix"], body["top_keys"][0]["requests"]) == (busy.api_key.prefix, 3)
    assert sorted((k["prefix"], k["requests"]) for k in body["top_keys"][1:]) == sorted(
        [(quiet.api_key.prefix, 1), (other.api_key.prefix, 1)]
    )
    assert len(body["per_minute"]) == 60
    assert sum(count for _, count in body["per_minute"]) == 5
    html = admin_client.get(PAGE).content.decode()
    assert "4 / 1000" in html and f"tg_{busy.api_key.prefix}_" in html
    assert 'id="ops-per-minute"' in html


# --- Redis down -----------------------------------------------------------


def _assert_degraded(response, elapsed: float, account_name: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 200
    html = response.content.decode()
    assert "Redis unreachable" in html
    assert account_name in html  # the database still speaks
    assert elapsed < 1.0, elapsed


def test_redis_killed_page_renders_from_the_database(admin_client: Client, own_redis: RedisServer) -> None:
    account = issue_key(quotas="500/day").api_key.account
    assert "Redis unreachable" not in admin_client.get(PAGE).content.decode()
    own_redis.kill()
    started = time.monotonic()
    response = admin_client.get(PAGE)
    _assert_degraded(response, time.monotonic() - started, account.name)
    assert " / 500" in response.content.decode()  # the plan's quota, from the database
    data = admin_client.get(DATA).json()
    assert data["redis_unreachable"] is True and data["queues"] is None
    assert data["accounts"][0]["today"] == {"used": None, "quota": 500}


def test_redis_paused_page_answers_within_a_second(admin_client: Client, own_redis: RedisServer) -> None:
    account = issue_key().api_key.account
    assert admin_client.get(PAGE).status_code == 200  # pooled connections exist
    own_redis.pause()
    try:
        for url in (PAGE, DATA):
            started = time.monotonic()
            response = admin_client.get(url)
            elapsed = time.monotonic() - started
            if url == PAGE:
                _assert_degraded(response, elapsed, account.name)
            else:
                assert response.json()["redis_unreachable"] is True and elapsed < 1.0
    finally:
        own_redis.resume()
    assert "Redis unreachable" not in admin_client.get(PAGE).content.decode()


def test_demo_mode_banner(admin_client: Client) -> None:
    with override_settings(
        DEMO_MODE=True, CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ):
        response = admin_client.get(PAGE)
        data = admin_client.get(DATA).json()
    assert response.status_code == 200
    html = response.content.decode()
    assert "DEMO_MODE" in html and 'id="ops-demo-banner"' in html
    assert "Redis unreachable" not in html
    assert data["demo_mode"] is True and data["redis_unreachable"] is False


@pytest.mark.django_db(transaction=True)
def test_waiting_jobs_come_from_the_job_table_and_rq_is_labelled(
    admin_client: Client, redis_server: RedisServer, tmp_path: object
) -> None:
    # A job queued in the table whose RQ entry was lost (a Redis restart):
    # the page counts it from the row; RQ's own figure stays beside it, labelled.
    from django.test.utils import override_settings

    from tests.health.jobs import failed_validation_job
    from validation.failed_jobs import failed_job_retry

    with override_settings(MEDIA_ROOT=tmp_path):
        job = failed_validation_job()
        failed_job_retry(job_id=str(job.pk))
    rq_queue(redis_server).empty()
    data = admin_client.get(DATA).json()
    assert data["jobs"]["counts"]["queued"] == 1 and data["jobs_waiting"] == 1
    assert data["queues"][0]["queued"] == 0
    assert data["no_worker_while_jobs_wait"] is True
    html = admin_client.get(PAGE).content.decode()
    assert '<td class="ops-waiting">1</td>' in html and '<td class="ops-jobs-queued">1</td>' in html
    assert "from the job table (the truth)" in html and "RQ's own registries" in html
    assert "No worker is alive while 1 job waits" in html
