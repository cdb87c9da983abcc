"""``GET /api/v1/usage/history``: the ledger, for the client, free of charge."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from quotas.models import UsageRecord
from tests.conftest import bearer
from tests.factories import issue_key

pytestmark = pytest.mark.django_db


def history(client: Client, caller: str, **query: str):  # type: ignore[no-untyped-def]
    return client.get("/api/v1/usage/history", query, **bearer(caller))


@pytest.fixture
def ledger():  # type: ignore[no-untyped-def]
    """An account with two keys and a refund, in November and December 2026."""
    first = issue_key(rate_limits="", quotas="")
    account = first.api_key.account
    second = issue_key(account)
    rows = [
        (first.api_key.pk, dt.date(2026, 11, 29), 10, 30, 0),
        (second.api_key.pk, dt.date(2026, 11, 29), 1, 5, 0),
        (first.api_key.pk, dt.date(2026, 11, 30), 2, 2, 0),
        (0, dt.date(2026, 11, 30), 0, -4, 4),
        (first.api_key.pk, dt.date(2026, 12, 1), 7, 7, 0),
    ]
    for key_id, day, requests, units, refunded in rows:
        UsageRecord.objects.create(
            account=account, key_id=key_id, day=day, requests=requests, units=units, refunded=refunded
        )
    UsageRecord.objects.create(account=issue_key().api_key.account, key_id=99, day=dt.date(2026, 11, 29), units=1000)
    return first, second


def test_the_history_per_day_holds_the_days_with_usage(client: Client, ledger) -> None:  # type: ignore[no-untyped-def]
    first, _ = ledger
    body = history(client, first.key, **{"from": "2026-11-28", "to": "2026-11-30"}).json()
    assert body["granularity"] == "day" and body["key"] is None
    assert (body["from"], body["to"]) == ("2026-11-28", "2026-11-30")
    assert body["periods"] == [
        {"period": "2026-11-29", "requests": 11, "units": 35, "refunded": 0},
        {"period": "2026-11-30", "requests": 2, "units": -2, "refunded": 4},
    ]
    assert body["total"] == {"requests": 13, "units": 33, "refunded": 4}


def test_the_history_per_month_and_per_key(client: Client, ledger) -> None:  # type: ignore[no-untyped-def]
    first, second = ledger
    query = {"from": "2026-11-01", "to": "2026-12-31", "granularity": "month"}
    body = history(client, first.key, **query).json()
    assert [(p["period"], p["units"]) for p in body["periods"]] == [("2026-11", 33), ("2026-12", 7)]
    body = history(client, first.key, **query, key=second.api_key.prefix).json()
    assert body["key"] == {"prefix": second.api_key.prefix, "label": "test"}
    assert [(p["period"], p["units"]) for p in body["periods"]] == [("2026-11", 5)]


def test_the_history_is_free_even_with_the_quota_spent(client: Client) -> None:
    first = issue_key(rate_limits="", quotas="1/day")
    assert client.get("/api/v1/ping", **bearer(first.key)).status_code == 200
    assert client.get("/api/v1/ping", **bearer(first.key)).status_code == 429  # 1/day
    for _ in range(3):
        assert history(client, first.key).status_code == 200
    default = history(client, first.key).json()
    today = dt.datetime.now(tz=dt.UTC).date()
    assert (default["from"], default["to"]) == ((today - dt.timedelta(days=29)).isoformat(), today.isoformat())


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"from": "2026-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-1-1"}, "from"),
        ({"granularity": "week"}, "granularity"),
    ],
)
def test_a_malformed_query_is_400(client: Client, ledger, query: dict[str, str], parameter: str) -> None:  # type: ignore[no-untyped-def]
    first, _ = ledger
    response = history(client, first.key, **query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("invalid_usage_query", {"parameter": parameter})


def test_a_key_of_another_account_is_404(client: Client, ledger) -> None:  # type: ignore[no-untyped-def]
    first, _ = ledger
    other = issue_key()
    for prefix in (other.api_key.prefix, "nosuchprefix"):
        response = history(client, first.key, key=prefix)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "unknown_key"


def test_an_empty_range_is_empty(client: Client, ledger) -> None:  # type: ignore[no-untyped-def]
    first, _ = ledger
    body = history(client, first.key, **{"from": "2026-12-01", "to": "2026-11-01"}).json()
    assert body["periods"] == [] and body["total"] == {"requests": 0, "units": 0, "refunded": 0}
