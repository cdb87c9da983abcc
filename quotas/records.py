"""Key records: what a request needs to know about its key, account and plan,
read from the database.

The reads are SQL written once from the models' own tables and columns:
through the ORM each would be compiled again on every read (about 0.3 and 0.8
ms of CPU), and every process reads every key it serves about once a minute.
Only table and column names are formatted into the SQL (quoted); prefixes are
query parameters.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from django.db import connection, models
from django.utils import timezone

from quotas.contract import Subject
from quotas.models import Account, ApiKey, Plan
from quotas.policy import Quota, RateLimit, parse_quotas, parse_rates

# Account ids start at 1: the generation read for an unknown prefix, so that
# it costs what a known prefix costs, is this account's (a hash holding only
# a generation).
NO_ACCOUNT = 0

# A row's columns, (model, field), in the order record_from unpacks them.
_ROW = (
    (ApiKey, "prefix"),
    (ApiKey, "id"),
    (ApiKey, "label"),
    (ApiKey, "secret_hash"),
    (ApiKey, "revoked_at"),
    (ApiKey, "expires_at"),
    (ApiKey, "account"),
    (Account, "name"),
    (Account, "is_active"),
    (Plan, "name"),
    (Plan, "rate_limits"),
    (Plan, "quotas"),
    (Plan, "max_upload_bytes"),
    (Plan, "max_sync_instances"),
    (Plan, "max_sync_body_bytes"),
)
ACCOUNT_COLUMN = 6
# The stand-in row of an unknown prefix: a plan shaped like the real ones, and
# a hash no secret has.
_NO_ROW = (
    "",
    0,
    "",
    "0" * 64,
    None,
    None,
    NO_ACCOUNT,
    "",
    False,
    "",
    "100/s, 1000/m",
    "10000/day, 100000/month",
    1,
    1,
    1,
)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a request needs to know about its key, account and plan."""

    key_id: int
    prefix: str
    label: str
    secret_hash: str
    account_id: int
    account_name: str
    plan_name: str
    usable: bool
    expires_at: float | None
    max_upload_bytes: int
    max_sync_instances: int
    subject: Subject
    loaded_at: float = field(compare=False)
    max_sync_body_bytes: int = 2_621_440

    def valid_now(self) -> bool:
        return self.usable and (self.expires_at is None or self.expires_at > time.time())


@functools.cache
def _sql(vendor: str) -> tuple[str, str]:
    """A key's account id by prefix, and rows by prefix (``WHERE ... IN``,
    to which the placeholders are added)."""
    quote = connection.ops.quote_name

    def column(model: type[models.Model], name: str) -> str:
        found = model._meta.get_field(name)
        if not isinstance(found, models.Field) or found.column is None:
            raise TypeError(f"{model.__name__}.{name} is not a column")
        return f"{quote(model._meta.db_table)}.{quote(found.column)}"

    prefix = column(ApiKey, "prefix")
    key_table, account_table, plan_table = (quote(m._meta.db_table) for m in (ApiKey, Account, Plan))
    account = f"SELECT {column(ApiKey, 'account')} FROM {key_table} WHERE {prefix} = %s"  # noqa: S608
    rows = (
        f"SELECT {', '.join(column(model, name) for model, name in _ROW)} FROM {key_table}"  # noqa: S608
        f" INNER JOIN {account_table} ON {column(Account, 'id')} = {column(ApiKey, 'account')}"
        f" INNER JOIN {plan_table} ON {column(Plan, 'id')} = {column(Account, 'plan')}"
        f" WHERE {prefix} IN "
    )
    return account, rows


def read_account(prefix: str) -> int | None:
    """The account of the key with ``prefix`` (None: no such key). Raises
    DatabaseError."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(connection.vendor)[0], [prefix])
        found = cursor.fetchone()
    return found[0] if found else None


def read_rows(prefixes: list[str]) -> dict[str, tuple[Any, ...]]:
    """The rows of the keys with these prefixes, by prefix (a missing one:
    no such key), in one query. Raises DatabaseError."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(connection.vendor)[1] + f"({', '.join(['%s'] * len(prefixes))})", prefixes)
        return {row[0]: row for row in cursor.fetchall()}


def row_account(row: tuple[Any, ...]) -> int:
    return int(row[ACCOUNT_COLUMN])


def record_from(prefix: str, row: tuple[Any, ...] | None, generation: str, same: Subject | None = None) -> KeyRecord:
    """The record of ``row`` (None: the stand-in of an unknown prefix, built
    by the same steps) with the account's ``generation``. ``same``: the
    subject of the record read before, kept if nothing in it changed, with
    what the backends derived from it (encoded arguments, header text) and
    the leases held on it."""
    (_, key_id, label, secret_hash, revoked_at, expires_at, account_id, account_name, is_active, plan_name, rates, quotas, max_upload, max_sync, max_body) = row if row is not None else _NO_ROW  # fmt: skip
    subject = Subject(account_id, key_id, generation, *_limits(rates, quotas))
    if same is not None and same == subject:
        subject = same
    return KeyRecord(
        key_id=key_id,
        prefix=prefix,
        label=label,
        secret_hash=secret_hash,
        account_id=account_id,
        account_name=account_name,
        plan_name=plan_name,
        usable=revoked_at is None and bool(is_active),
        expires_at=_expiry(expires_at),
        max_upload_bytes=max_upload,
        max_sync_instances=max_sync,
        max_sync_body_bytes=max_body,
        subject=subject,
        loaded_at=time.monotonic(),
    )


def _expiry(value: object) -> float | None:
    """``expires_at`` as a cursor returns it (a datetime, or text on SQLite)
    in epoch seconds."""
    moment = ApiKey._meta.get_field("expires_at").to_python(value)
    if moment is None:
        return None
    return (timezone.make_aware(moment, UTC) if timezone.is_naive(moment) else moment).timestamp()


@functools.lru_cache(maxsize=1024)
def _limits(rates: str, quotas: str) -> tuple[tuple[RateLimit, ...], tuple[Quota, ...]]:
    """A plan's limits from their text (parsed once per text and process)."""
    return parse_rates(rates), parse_quotas(quotas)
