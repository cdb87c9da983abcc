"""What the usage ledger holds, read back: a client's history, the admin's
chart and the billing export.

Everything here reads :class:`~quotas.models.UsageRecord` rows, which the
flusher writes about every ``USAGE_FLUSH_INTERVAL`` seconds: the last second
or so of usage is still in Redis and shows up on the next read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Sum

from quotas.ledger import REFUND_KEY
from quotas.models import Account, ApiKey, UsageRecord

GRANULARITIES = ("day", "month")


@dataclass(frozen=True, slots=True)
class Period:
    """One day or month of usage: ``start`` is its first day."""

    start: dt.date
    requests: int
    units: int
    refunded: int

    def label(self, granularity: str) -> str:
        return self.start.isoformat() if granularity == "day" else self.start.strftime("%Y-%m")


def parse_month(text: str) -> dt.date:
    """``YYYY-MM`` as the month's first day; ValueError if malformed."""
    year, sep, month = text.partition("-")
    if not (sep and len(year) == 4 and len(month) == 2 and year.isdigit() and month.isdigit()):
        raise ValueError(text)
    return dt.date(int(year), int(month), 1)


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def periods_between(since: dt.date, until: dt.date, granularity: str) -> Iterator[dt.date]:
    """The first day of every day or month from ``since`` to ``until``."""
    current = since if granularity == "day" else month_start(since)
    while current <= until:
        yield current
        current = current + dt.timedelta(days=1) if granularity == "day" else next_month(current)


def usage_history(
    *,
    account_id: int,
    since: dt.date,
    until: dt.date,
    granularity: str = "day",
    key_id: int | None = None,
    fill: bool = True,
) -> list[Period]:
    """Every day (or month) from ``since`` to ``until`` inclusive, with the
    ledger's requests and units, in order; ``fill``: with zeros for the
    periods without usage (else those are left out). With ``key_id``, that
    key's usage alone (refunds belong to no key)."""
    rows = UsageRecord.objects.filter(account_id=account_id, day__gte=since, day__lte=until)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    totals: dict[dt.date, list[int]] = {}
    for day, requests, units, refunded in rows.values_list("day", "requests", "units", "refunded"):
        start = day if granularity == "day" else month_start(day)
        total = totals.setdefault(start, [0, 0, 0])
        total[0] += requests
        total[1] += units
        total[2] += refunded
    if not fill:
        return [Period(start, *totals[start]) for start in sorted(totals)]
    return [Period(start, *totals.get(start, (0, 0, 0))) for start in periods_between(since, until, granularity)]


@dataclass(frozen=True, slots=True)
class BillingRow:
    """One key's (or an account's refunds') usage in a month."""

    month: str
    account_id: int
    account: str
    plan: str
    key_prefix: str
    key_label: str
    requests: int
    units: int
    refunded: int

    FIELDS = ("month", "account_id", "account", "plan", "key_prefix", "key_label", "requests", "units", "refunded")

    def values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)


def usage_export(*, month: dt.date, account_ids: list[int] | None = None) -> list[BillingRow]:
    """The ledger of one UTC month per account and key, for billing (refunds
    on a row of their own with an empty key prefix), ordered by account
    name. Accounts and keys deleted since keep their rows, named by id."""
    rows = UsageRecord.objects.filter(day__gte=month, day__lt=next_month(month))
    if account_ids is not None:
        rows = rows.filter(account_id__in=account_ids)
    sums = list(
        rows.values("account_id", "key_id")
        .annotate(requests=Sum("requests"), units=Sum("units"), refunded=Sum("refunded"))
        .order_by("account_id", "key_id")
    )
    accounts = {
        account.pk: account
        for account in Account.objects.select_related("plan").filter(pk__in={row["account_id"] for row in sums})
    }
    keys = dict(
        (pk, (prefix, label))
        for pk, prefix, label in ApiKey.objects.filter(pk__in={row["key_id"] for row in sums}).values_list(
            "pk", "prefix", "label"
        )
    )
    label = month.strftime("%Y-%m")
    out = []
    for row in sums:
        account = accounts.get(row["account_id"])
        prefix, key_label = (
            ("", "refunds") if row["key_id"] == REFUND_KEY else keys.get(row["key_id"], (f"#{row['key_id']}", ""))
        )
        out.append(
            BillingRow(
                month=label,
                account_id=row["account_id"],
                account=account.name if account else f"#{row['account_id']}",
                plan=account.plan.name if account else "",
                key_prefix=prefix,
                key_label=key_label,
                requests=row["requests"],
                units=row["units"],
                refunded=row["refunded"],
            )
        )
    out.sort(key=lambda row: (row.account, row.key_prefix))
    return out
