"""Billing from the ledger: the admin's chart and CSV, ``manage.py export_usage``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from quotas.models import UsageRecord
from tests.factories import issue_key

pytestmark = pytest.mark.django_db

TODAY = dt.datetime.now(tz=dt.UTC).date()


@pytest.fixture
def billed():  # type: ignore[no-untyped-def]
    first = issue_key(rate_limits="", quotas="")
    account = first.api_key.account
    second = issue_key(account)
    other = issue_key()
    rows = [
        (account, first.api_key.pk, dt.date(2025, 11, 3), 4, 40, 0),
        (account, first.api_key.pk, dt.date(2025, 11, 30), 1, 10, 0),
        (account, second.api_key.pk, dt.date(2025, 11, 12), 2, 2, 0),
        (account, 0, dt.date(2025, 11, 12), 0, -5, 5),
        (account, first.api_key.pk, dt.date(2025, 12, 1), 9, 9, 0),  # another month
        (other.api_key.account, other.api_key.pk, dt.date(2025, 11, 1), 1, 1, 0),
        (account, first.api_key.pk, TODAY, 3, 33, 0),
    ]
    for owner, key_id, day, requests, units, refunded in rows:
        UsageRecord.objects.update_or_create(
            account=owner, key_id=key_id, day=day, defaults={"requests": requests, "units": units, "refunded": refunded}
        )
    return first, second, other


def test_export_usage_writes_a_month_per_account_and_key_as_csv(billed) -> None:  # type: ignore[no-untyped-def]
    first, second, other = billed
    out = io.StringIO()
    call_command("export_usage", "--month", "2025-11", stdout=out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    account = first.api_key.account
    mine = [row for row in rows if row["account"] == account.name]
    assert {row["key_prefix"]: (row["requests"], row["units"], row["refunded"]) for row in mine} == {
        first.api_key.prefix: ("5", "50", "0"),
        second.api_key.prefix: ("2", "2", "0"),
        "": ("0", "-5", "5"),
    }
    refunds = next(row for row in mine if row["key_prefix"] == "")
    assert (refunds["key_label"], refunds["units"], refunds["refunded"]) == ("refunds", "-5", "5")
    assert {row["month"] for row in rows} == {"2025-11"}
    assert any(row["account"] == other.api_key.account.name for row in rows)
    assert all(row["plan"] for row in rows)


def test_export_usage_as_json(billed) -> None:  # type: ignore[no-untyped-def]
    first, _, _ = billed
    out = io.StringIO()
    call_command("export_usage", "--month", "2025-12", "--format", "json", stdout=out)
    rows = json.loads(out.getvalue())
    december = [row for row in rows if row["key_prefix"] == first.api_key.prefix]
    assert december[0]["units"] == 9
    assert december[0]["account_id"] == first.api_key.account_id


def test_export_usage_refuses_a_malformed_month() -> None:
    with pytest.raises(CommandError) as raised:
        call_command("export_usage", "--month", "2026-1")
    assert raised.value.returncode == 2 and "YYYY-MM" in str(raised.value)


def test_the_account_page_charts_the_last_30_days(admin_client: Client, billed) -> None:  # type: ignore[no-untyped-def]
    first, _, _ = billed
    page = admin_client.get(f"/admin/quotas/account/{first.api_key.account_id}/change/").content.decode()
    assert page.count("<rect ") == 30
    assert f"{TODAY.isoformat()}: 3 requests, 33 units" in page
    assert "usage-export/?account=" in page


def test_the_admin_exports_csv(admin_client: Client, billed) -> None:  # type: ignore[no-untyped-def]
    first, _, other = billed
    response = admin_client.get("/admin/quotas/account/usage-export/", {"month": "2025-11"})
    assert response["Content-Type"] == "text/csv"
    assert 'filename="usage-2025-11.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["account"] for row in rows} == {first.api_key.account.name, other.api_key.account.name}
    one = admin_client.get(
        "/admin/quotas/account/usage-export/", {"month": "2025-11", "account": other.api_key.account_id}
    )
    assert [row["account"] for row in csv.DictReader(io.StringIO(one.content.decode()))] == [other.api_key.account.name]
    assert admin_client.get("/admin/quotas/account/usage-export/", {"month": "nope"}).status_code == 400
    action = admin_client.post(
        "/admin/quotas/account/", {"action": "export_usage_csv", "_selected_action": [first.api_key.account_id]}
    )
    assert action["Content-Type"] == "text/csv"


def test_the_export_needs_the_view_permission(client: Client, billed) -> None:  # type: ignore[no-untyped-def]
    User.objects.create_user("clerk", password="pw", is_staff=True)
    client.login(username="clerk", password="pw")
    assert client.get("/admin/quotas/account/usage-export/").status_code == 403
