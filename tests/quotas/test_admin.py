"""The quotas admin: keys shown once, revocation, usage beside each account."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from quotas import keys
from quotas.models import ApiKey
from tests.conftest import bearer
from tests.factories import AccountFactory, issue_key
from tests.redis_server import RedisServer

pytestmark = pytest.mark.django_db


def test_creating_a_key_shows_it_once_on_the_answer_and_never_in_a_cookie_or_the_session(admin_client: Client) -> None:
    account = AccountFactory()
    response = admin_client.post(
        "/admin/quotas/apikey/add/",
        {"account": account.pk, "label": "from admin", "expires_at_0": "", "expires_at_1": ""},
    )
    assert response.status_code == 200  # the key is on this page, not behind a redirect
    assert "no-store" in response["Cache-Control"]
    shown = re.findall(r"tg_[A-Za-z0-9]+_[A-Za-z0-9_-]+", response.content.decode())
    assert len(set(shown)) == 1
    parsed = keys.parse(shown[0])
    assert parsed is not None
    stored = ApiKey.objects.get(prefix=parsed.prefix)
    assert stored.label == "from admin" and keys.secret_matches(parsed.secret, stored.secret_hash)
    # Nothing that outlives the response holds the secret: no cookie (Django's
    # messages cookie is signed, not encrypted), no session, no later page.
    assert all(parsed.secret not in morsel.value for morsel in response.cookies.values())
    assert all(parsed.secret not in str(value) for value in admin_client.session.values())
    for page in ("/admin/quotas/apikey/", f"/admin/quotas/apikey/{stored.pk}/change/"):
        later = admin_client.get(page)
        assert parsed.secret.encode() not in later.content
        assert all(parsed.secret not in morsel.value for morsel in later.cookies.values())


@pytest.mark.django_db(transaction=True)  # the invalidation is published on commit
def test_revoke_action(admin_client: Client, client: Client) -> None:
    issued = issue_key()
    assert client.get("/api/v1/ping", **bearer(issued.key)).status_code == 200
    response = admin_client.post(
        "/admin/quotas/apikey/", {"action": "revoke", "_selected_action": [issued.api_key.pk]}, follow=True
    )
    assert response.status_code == 200
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is not None
    assert client.get("/api/v1/ping", **bearer(issued.key)).status_code == 401


def test_account_list_shows_usage_today_and_this_month(admin_client: Client, client: Client) -> None:
    issued = issue_key(rate_limits="100/s", quotas="50/day, 900/month")
    for _ in range(3):
        client.get("/api/v1/ping", **bearer(issued.key))
    page = admin_client.get("/admin/quotas/account/").content.decode()
    assert "3 / 50" in page and "3 / 900" in page


def test_account_list_renders_with_redis_down(admin_client: Client, own_redis: RedisServer) -> None:
    issue_key()
    own_redis.kill()
    response = admin_client.get("/admin/quotas/account/")
    assert response.status_code == 200
    assert b"Redis is unreachable" in response.content


def test_plan_admin_lists_plans(admin_client: Client) -> None:
    issue_key(rate_limits="7/s")
    assert b"7/s" in admin_client.get("/admin/quotas/plan/").content


def test_account_list_never_shows_a_false_zero_for_a_window_without_quota(admin_client: Client, client: Client) -> None:
    # A plan with a daily quota only: the limiter counts no month in Redis,
    # so the list shows the ledger's month instead of "0" beside a busy day.
    from quotas.backends import get_backend
    from quotas.flusher import Flusher

    issued = issue_key(rate_limits="100/s", quotas="50/day")
    for _ in range(3):
        client.get("/api/v1/ping", **bearer(issued.key))
    Flusher(backend=get_backend).flush()  # what the worker's flusher does every second
    page = admin_client.get("/admin/quotas/account/").content.decode()
    assert "3 / 50" in page
    assert "3 (ledger, no quota)" in page
    assert '<td class="field-usage_this_month">0</td>' not in page
