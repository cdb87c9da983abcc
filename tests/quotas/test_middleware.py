"""The /api/ middleware: keys, headers, rejections and faults, through Django's
test client, against both counter backends, with leases on and off."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta

import http_sfv
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from quotas import keys
from quotas.contract import Backend
from quotas.meter import process_meter
from quotas.models import ApiKey
from quotas.services import api_key_revoke, plan_set
from tests.conftest import bearer
from tests.factories import issue_key
from tests.redis_server import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True, params=["leases", "no-leases"])
def leases(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Every test here runs with leases on (the default) and off."""
    with override_settings(RATELIMIT_LEASES=request.param == "leases"):
        yield request.param == "leases"


def ping(client: Client, key: str | None, **headers: str):  # type: ignore[no-untyped-def]
    return client.get("/api/v1/ping", **(bearer(key) if key else {}), **headers)


def error_code(response) -> str:  # type: ignore[no-untyped-def]
    return response.json()["error"]["code"]


def test_missing_key_is_401_missing_api_key(client: Client, backend: Backend) -> None:
    response = ping(client, None)
    assert response.status_code == 401
    assert error_code(response) == "missing_api_key"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert ping(client, None, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz").status_code == 401


def test_x_api_key_header_is_accepted(client: Client, backend: Backend) -> None:
    key = issue_key().key
    assert client.get("/api/v1/ping", HTTP_X_API_KEY=key).json() == {"pong": True}


def test_every_kind_of_bad_key_gets_the_same_401(client: Client, backend: Backend) -> None:
    issued = [issue_key() for _ in range(5)]
    revoked, expired, inactive, good = issued[0], issued[1], issued[2], issued[3]
    api_key_revoke(prefix=revoked.api_key.prefix)
    ApiKey.objects.filter(pk=expired.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    inactive.api_key.account.is_active = False
    inactive.api_key.account.save()
    unknown, _ = keys.generate()
    body = good.key[:-6]
    bad_checksum = body + ("000000" if not good.key.endswith("000000") else "000001")
    wrong_secret = f"tg_{good.api_key.prefix}_{'A' * 32}"
    wrong_secret += keys._checksum(wrong_secret)
    bodies = set()
    for candidate in [
        revoked.key,
        expired.key,
        inactive.key,
        unknown,
        bad_checksum,
        wrong_secret,
        "tg_nope",
        "x" * 300,
    ]:
        response = ping(client, candidate)
        assert response.status_code == 401, candidate
        # The same bytes but for the request's own id.
        bodies.add(response.content.replace(response["X-Request-ID"].encode(), b"<id>"))
    assert bodies == {
        b'{"error":{"code":"invalid_api_key","message":"The API key is invalid, revoked or expired.",'
        b'"request_id":"<id>"}}'
    }
    assert ping(client, good.key).status_code == 200


def test_malformed_key_is_refused_before_database_or_redis(client: Client, redis_server: RedisServer) -> None:
    good = issue_key().key
    redis = redis_server.client()
    redis.config_resetstat()
    with CaptureQueriesContext(connection) as queries:
        assert ping(client, good[:-1] + ("a" if good[-1] != "a" else "b")).status_code == 401
        assert ping(client, "tg_short_key").status_code == 401
    assert len(queries) == 0
    assert set(redis.info("commandstats")) <= {"cmdstat_config|resetstat"}


def test_cached_key_costs_no_database_query(client: Client, backend: Backend) -> None:
    key = issue_key().key
    ping(client, key)  # loads the record and writes last_used_at
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert ping(client, key).status_code == 200
    assert len(queries) == 0


def test_last_used_is_written_once_a_minute_not_per_request(client: Client, backend: Backend) -> None:
    issued = issue_key()
    ping(client, issued.key)
    first = ApiKey.objects.get(pk=issued.api_key.pk).last_used_at
    assert first is not None
    ping(client, issued.key)
    assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at == first
    process_meter().records.touch_interval = 0.0
    ping(client, issued.key)
    assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at > first


def test_headers_parse_as_structured_fields(client: Client, backend: Backend) -> None:
    key = issue_key(rate_limits="100/m, 5000/h", quotas="10000/day, 200000/month").key
    response = ping(client, key)
    policy = http_sfv.List()
    policy.parse(response["RateLimit-Policy"].encode())
    assert [(item.value, dict(item.params)) for item in policy] == [
        ("per-minute", {"q": 100, "w": 60}),
        ("per-hour", {"q": 5000, "w": 3600}),
        ("daily-quota", {"q": 10000, "w": 86400}),
        ("monthly-quota", {"q": 200000, "w": policy[3].params["w"]}),
    ]
    current = http_sfv.List()
    current.parse(response["RateLimit"].encode())
    assert [item.value for item in current] == ["per-minute", "per-hour", "daily-quota", "monthly-quota"]
    assert [item.params["r"] for item in current] == [99, 4999, 9999, 199999]
    assert all(isinstance(item.params["t"], int) and item.params["t"] >= 0 for item in current)
    assert response["X-RateLimit-Limit"] == "100"
    assert response["X-RateLimit-Remaining"] == "99"
    assert 0 <= int(response["X-RateLimit-Reset"]) - time.time() <= 61


def test_rate_limited_is_429_with_retry_after_and_headers(client: Client, backend: Backend) -> None:
    key = issue_key(rate_limits="3/m", quotas="").key
    assert [ping(client, key).status_code for _ in range(3)] == [200, 200, 200]
    response = ping(client, key)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["policy"] == "per-minute"
    assert 1 <= int(response["Retry-After"]) <= 20
    assert error["details"]["retry_after"] == int(response["Retry-After"])
    assert response["X-RateLimit-Remaining"] == "0"
    assert '"per-minute";r=0' in response["RateLimit"]


def test_quota_exceeded_is_429_quota_exceeded(client: Client, backend: Backend) -> None:
    key = issue_key(rate_limits="100/s", quotas="2/day").key
    assert [ping(client, key).status_code for _ in range(2)] == [200, 200]
    response = ping(client, key)
    assert response.status_code == 429
    assert error_code(response) == "quota_exceeded"
    assert response.json()["error"]["details"]["policy"] == "daily-quota"


def test_usage_consumes_nothing_and_answers_while_limited(client: Client, backend: Backend) -> None:
    issued = issue_key(rate_limits="2/m", quotas="10/day")
    for _ in range(3):
        ping(client, issued.key)
    for _ in range(3):
        response = client.get("/api/v1/usage", **bearer(issued.key))
        assert response.status_code == 200
    body = response.json()
    assert body["account"] == issued.api_key.account.name
    assert body["key"]["prefix"] == issued.api_key.prefix
    by_name = {limit["name"]: limit for limit in body["limits"]}
    assert by_name["per-minute"]["remaining"] == 0
    assert by_name["daily-quota"]["remaining"] == 8
    assert by_name["daily-quota"]["reset_at"].endswith("T00:00:00Z")


def test_health_and_admin_are_not_metered(client: Client) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/admin/login/").status_code == 200


def test_revoked_key_is_refused_from_the_next_request(client: Client, backend: Backend) -> None:
    issued = issue_key()
    assert ping(client, issued.key).status_code == 200
    api_key_revoke(prefix=issued.api_key.prefix)
    assert ping(client, issued.key).status_code == 401


def test_plan_change_applies_from_the_next_request(client: Client, backend: Backend) -> None:
    issued = issue_key(rate_limits="100/m", quotas="")
    assert ping(client, issued.key)["X-RateLimit-Limit"] == "100"
    plan_set(name=issued.api_key.account.plan.name, rate_limits=["7/s"])
    assert ping(client, issued.key)["X-RateLimit-Limit"] == "7"


def test_a_change_that_missed_redis_is_picked_up_within_the_record_age(client: Client) -> None:
    issued = issue_key(rate_limits="100/m", quotas="")
    assert ping(client, issued.key).status_code == 200
    ApiKey.objects.filter(pk=issued.api_key.pk).update(revoked_at=timezone.now())  # no signal, no invalidation
    assert ping(client, issued.key).status_code == 200
    process_meter().records.max_age = 0.0
    assert ping(client, issued.key).status_code == 401


class TestRedisFaults:
    """RATELIMIT_FAIL_MODE with the counters' Redis killed or hung."""

    def test_closed_mode_answers_503_when_redis_is_down(self, client: Client, own_redis: RedisServer) -> None:
        key = issue_key().key
        assert ping(client, key).status_code == 200
        own_redis.kill()
        response = ping(client, key)
        assert response.status_code == 503
        assert error_code(response) == "rate_limiter_unavailable"
        assert response["Retry-After"] == "1"

    def test_closed_mode_refuses_new_keys_too(self, client: Client, own_redis: RedisServer) -> None:
        own_redis.kill()
        response = ping(client, issue_key().key)
        assert response.status_code == 503

    def test_open_mode_serves_without_limit_headers_and_warns(
        self, client: Client, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        key = issue_key().key
        assert ping(client, key).status_code == 200
        own_redis.kill()
        with override_settings(RATELIMIT_FAIL_MODE="open"), caplog.at_level(logging.WARNING, "tollgate.quotas"):
            responses = [ping(client, key) for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert all("RateLimit" not in r and "X-RateLimit-Limit" not in r for r in responses)
        warnings = [r for r in caplog.records if "RATELIMIT_FAIL_MODE=open" in r.getMessage()]
        assert len(warnings) == 1  # rate-limited, not once per request

    def test_hung_redis_answers_within_a_second(self, client: Client, own_redis: RedisServer) -> None:
        key = issue_key().key
        assert ping(client, key).status_code == 200
        own_redis.pause()
        try:
            started = time.monotonic()
            response = ping(client, key)
            first = time.monotonic() - started
            started = time.monotonic()
            again = ping(client, key)
            second = time.monotonic() - started
        finally:
            own_redis.resume()
        assert (response.status_code, again.status_code) == (503, 503)
        assert first < 1.0
        assert second < 0.1  # the breaker answers without waiting for Redis again

    def test_recovers_when_redis_comes_back_without_restart(self, client: Client, own_redis: RedisServer) -> None:
        process_meter().outage.seconds = 0.0
        key = issue_key().key
        assert ping(client, key).status_code == 200
        own_redis.kill()
        assert ping(client, key).status_code == 503
        own_redis.start()  # empty: scripts, counters and generations are gone
        assert ping(client, key).status_code == 200


def test_head_ping_has_the_headers_of_a_get_and_no_body(client: Client) -> None:
    key = issue_key().key
    response = client.head("/api/v1/ping", **bearer(key))
    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Length"] == str(len(b'{"pong":true}'))
    assert response["X-RateLimit-Remaining"] == "99"
