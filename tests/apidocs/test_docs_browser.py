"""The API docs page in Debian's Chromium: rendered on the server from
openapi.json, with nothing fetched from another site."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import chromium
from tests.processes import ROOT, database_url, gunicorn, service_env
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_docs_page_renders_the_description(redis_server: RedisServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    env = service_env(REDIS_URL=redis_server.url, DATABASE_URL=database_url())
    with gunicorn(env, workers=1) as base, chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{base}/api/docs/")
        expect(page.locator("details#ping summary")).to_contain_text("/api/v1/ping")
        expect(page.locator("details#usage summary")).to_contain_text("/api/v1/usage")
        expect(page.locator("#errors table")).to_contain_text("rate_limited")
        expect(page.locator("tr#error-idempotency_key_reused")).to_contain_text("422")
        page.click("details#ping summary")
        expect(page.locator("details#ping")).to_contain_text("Retry-After")
        expect(page.locator("details#ping pre.sample.curl")).to_contain_text("$TOLLGATE_URL/api/v1/ping")
        page.click("details#validate summary")
        expect(page.locator("details#validate summary code")).to_contain_text("max_sync_instances")
        page.screenshot(path=str(ROOT / "test-results" / "api-docs.png"), full_page=True)
    assert errors == []
    assert requested and all(url.startswith(base) for url in requested), requested
