"""The operations page in a real browser: Debian's Chromium driven by
Playwright, against a real gunicorn and a private Redis.

The browser is Debian's Chromium, never a download (``tests.browser``).
Screenshots go to ``test-results/operations/`` (git-ignored).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import User
from django.test.utils import override_settings
from rq import Queue

from tests.browser import chromium
from tests.factories import issue_key
from tests.health.jobs import failed_validation_job
from tests.processes import ROOT, database_url, gunicorn, service_env
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = ROOT / "test-results" / "operations"
PASSWORD = "browser-test-pw-1"
# Generous: the page refreshes every second here, and Chromium on a busy
# two-core CI machine is slow.
WAIT_MS = 15_000


def test_operations_page_in_chromium(own_redis: RedisServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    media = tmp_path / "media"
    User.objects.create_superuser("ops", "ops@example.com", PASSWORD)
    issued = issue_key(quotas="1000/day")
    queue = Queue("validation", connection=own_redis.client())
    # Inside own_redis's settings (undone in order; pytest-django's `settings`
    # fixture would restore its copy after own_redis and bring that back).
    with override_settings(MEDIA_ROOT=media):
        failed = failed_validation_job()
    queue.remove(failed.rq_id)  # as if a worker had taken it, then failed it
    env = service_env(
        REDIS_URL=own_redis.url,
        DATABASE_URL=database_url(),
        SESSION_COOKIE_SECURE="false",
        OPERATIONS_REFRESH_SECONDS="1",
        MEDIA_ROOT=str(media),
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with gunicorn(env, workers=2) as base, chromium(tmp_path / "chromium-profile") as browser:
        for _ in range(4):
            assert httpx.get(f"{base}/api/v1/ping", headers={"X-API-Key": issued.key}).status_code == 200

        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console",
            lambda message: errors.append(f"{message.text} {message.location}") if message.type == "error" else None,
        )

        # Log in as staff, open the page from the admin index.
        page.goto(f"{base}/admin/login/?next=/admin/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.click("a[href='/admin/health/operations/']")
        expect(page.locator("h1")).to_have_text("Operations")
        queued = page.locator("#ops-queue-validation .ops-queued")
        expect(queued).to_have_text("0")
        expect(page.locator("#ops-chart svg rect.ops-bar")).to_have_count(60)
        # The 4 pings, and the failed job's schema registration and upload.
        assert page.locator("#ops-chart svg").get_attribute("data-total") == "6"
        expect(page.locator(f"#ops-account-{issued.api_key.account_id} .ops-today")).to_contain_text("4 / 1000")

        # Enqueue jobs: the depth changes without a reload.
        page.evaluate("window.__sameDocument = true")
        for _ in range(3):
            queue.enqueue("tests.health.rq_jobs.succeed")
        expect(queued).to_have_text("3", timeout=WAIT_MS)
        expect(page.locator("#ops-worker-banner")).to_contain_text("No worker is alive while 3 jobs wait")
        assert page.evaluate("window.__sameDocument") is True
        page.screenshot(path=str(SCREENSHOTS / "healthy.png"), full_page=True)

        # Retry the failed job: confirm, come back with a message, and it is queued again.
        failed_row = page.locator(f"#ops-failed-{failed.pk}")
        expect(failed_row).to_contain_text("internal_error: The job failed on the server.")
        expect(page.locator(".ops-count-failed")).to_have_text("failed: 1")
        failed_row.locator(".ops-retry").click()
        expect(page.locator("#content-main")).to_contain_text(str(failed.pk))
        page.click("#ops-confirm")
        expect(page.locator(".messagelist")).to_contain_text(f"Job {failed.pk} retried")
        expect(queued).to_have_text("4")
        expect(page.locator(f"#ops-failed-{failed.pk}")).to_have_count(0)
        expect(page.locator(".ops-count-queued")).to_have_text("queued: 1")
        page.evaluate("window.__sameDocument = true")

        # Redis stops: the banner appears, still without a reload.
        own_redis.kill()
        banner = page.locator("#ops-redis-banner")
        expect(banner).to_contain_text("Redis unreachable", timeout=WAIT_MS)
        expect(page.locator("#ops-redis-status")).to_have_text("unreachable")
        expect(page.locator(f"#ops-account-{issued.api_key.account_id}")).to_be_visible()
        assert page.evaluate("window.__sameDocument") is True
        page.screenshot(path=str(SCREENSHOTS / "redis-unreachable.png"), full_page=True)

        # A full load with Redis down renders too (HTTP 200, never a 500).
        response = page.reload()
        assert response is not None and response.status == 200
        expect(banner).to_be_visible()

    # No script error, no failed request (but the browser's own favicon probe).
    assert [error for error in errors if "favicon.ico" not in error] == []
    failed.refresh_from_db()
    assert failed.status == "queued"
    print(f"screenshots: {SCREENSHOTS}")


def test_a_killed_worker_turns_lost_and_raises_the_banner_in_chromium(own_redis: RedisServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from tests.validation.stack import FAST_RECOVERY, worker

    User.objects.create_superuser("ops", "ops@example.com", PASSWORD)
    env = service_env(
        REDIS_URL=own_redis.url,
        DATABASE_URL=database_url(),
        SESSION_COOKIE_SECURE="false",
        OPERATIONS_REFRESH_SECONDS="1",
        WORKER_HEARTBEAT_SECONDS="1",
        MEDIA_ROOT=str(tmp_path / "media"),
        **FAST_RECOVERY,
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with (
        gunicorn(env, workers=2) as base,
        worker(env) as process,
        chromium(tmp_path / "chromium-profile") as browser,
    ):
        page = browser.new_page()
        page.goto(f"{base}/admin/login/?next=/admin/health/operations/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("h1")).to_have_text("Operations")
        state = page.locator("#ops-workers .ops-worker .ops-worker-state")
        expect(state).to_have_text("idle", timeout=WAIT_MS)
        expect(page.locator("#ops-worker-banner")).to_have_count(0)
        page.evaluate("window.__sameDocument = true")

        process.kill()  # SIGKILL: rq itself would keep it "idle" for 8 minutes
        Queue("validation", connection=own_redis.client()).enqueue("tests.health.rq_jobs.succeed")
        expect(state).to_have_text("lost", timeout=WAIT_MS)
        banner = page.locator("#ops-worker-banner")
        expect(banner).to_contain_text("No worker is alive while 1 job waits", timeout=WAIT_MS)
        expect(banner).to_contain_text("1 worker lost: no heartbeat for longer than 3 s")
        expect(page.locator("#ops-workers .ops-worker")).to_have_class("ops-worker ops-dead")
        assert page.evaluate("window.__sameDocument") is True
        page.screenshot(path=str(SCREENSHOTS / "worker-lost.png"), full_page=True)
