"""Usage of the accounts for the operations page: what the database knows
(accounts, plans, keys, quotas) joined with what the counters know (units used
today and this month, requests of the last hour).

The database part never needs Redis, so the page can show it while Redis is
down; the counter part is read by the caller (``health.operations``) and passed
in, or None when Redis did not answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from quotas.models import Account, ApiKey
from quotas.traffic import Traffic

# The page reads the counters of this many accounts at most, every refresh:
# one HMGET of ~60 + 7 x keys fields each, in one pipeline. Beyond that the
# account list in the admin (one page at a time) is the place to look.
MAX_ACCOUNTS = 500
# Rows of the "top keys of the last hour" table.
TOP_KEYS = 10


@dataclass(frozen=True, slots=True)
class Directory:
    """The accounts and keys the page reports on, read from the database."""

    accounts: list[Account]
    keys: dict[int, ApiKey]  # by key id
    total_accounts: int

    @property
    def keys_by_account(self) -> dict[int, list[int]]:
        grouped: dict[int, list[int]] = {account.pk: [] for account in self.accounts}
        for key in self.keys.values():
            grouped.setdefault(key.account_id, []).append(key.pk)
        return grouped


@dataclass(frozen=True, slots=True)
class Quotaline:
    """Units used in one window against the plan's quota. ``quota`` None: the
    plan has none, and the limiter counts nothing for that window (so
    ``used`` is None too); ``used`` None with a quota: Redis did not answer."""

    used: int | None
    quota: int | None

    @property
    def percent(self) -> float | None:
        if self.used is None or not self.quota:
            return None
        return round(100 * self.used / self.quota, 1)


@dataclass(frozen=True, slots=True)
class AccountUsage:
    id: int
    name: str
    plan: str
    is_active: bool
    today: Quotaline
    month: Quotaline


@dataclass(frozen=True, slots=True)
class KeyUsage:
    id: int
    prefix: str
    label: str
    account: str
    requests: int


def read_directory(limit: int = MAX_ACCOUNTS) -> Directory:
    """Active accounts first, then by name; with every key that is not
    revoked (a revoked key's last-hour traffic is of no operational use)."""
    accounts = list(Account.objects.select_related("plan").order_by("-is_active", "name")[:limit])
    keys = ApiKey.objects.filter(account__in=[account.pk for account in accounts], revoked_at__isnull=True)
    return Directory(
        accounts=accounts,
        keys={key.pk: key for key in keys.only("id", "prefix", "label", "account_id")},
        total_accounts=Account.objects.count(),
    )


def _quota(account: Account, window: str) -> int | None:
    return next((quota.count for quota in account.plan.quota_list if quota.window == window), None)


def _line(counts: dict[str, int] | None, account: Account, window: str) -> Quotaline:
    quota = _quota(account, window)
    return Quotaline(counts[window] if counts and quota else None, quota)


def account_usage(directory: Directory, used: dict[int, dict[str, int]] | None) -> list[AccountUsage]:
    """One row per account; ``used`` None (Redis down) leaves the counts empty
    and keeps the quotas. The busiest accounts this month come first when the
    counts are known."""
    rows = []
    for account in directory.accounts:
        counts = used.get(account.pk) if used is not None else None
        rows.append(
            AccountUsage(
                id=account.pk,
                name=account.name,
                plan=account.plan.name,
                is_active=account.is_active,
                today=_line(counts, account, "day"),
                month=_line(counts, account, "month"),
            )
        )
    if used is not None:
        rows.sort(key=lambda row: (-(row.month.used or 0), row.name))
    return rows


def top_keys(directory: Directory, traffic: Traffic, limit: int = TOP_KEYS) -> list[KeyUsage]:
    """The keys with the most admitted requests over the last hour (keys with
    none are left out)."""
    names = {account.pk: account.name for account in directory.accounts}
    busiest = sorted(
        ((count, key_id) for key_id, count in traffic.per_key.items() if count > 0 and key_id in directory.keys),
        key=lambda pair: (-pair[0], pair[1]),
    )[:limit]
    rows = []
    for count, key_id in busiest:
        key = directory.keys[key_id]
        rows.append(KeyUsage(key_id, key.prefix, key.label, names.get(key.account_id, "?"), count))
    return rows
