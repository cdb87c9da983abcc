"""The usage ledger: usage that survives Redis.

Counters in Redis, flushed into the database by the flusher, restored from
the database when Redis comes back empty; on a private redis-server that keeps
nothing on disk, restarted by the tests."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from unittest import mock

import pytest
from django.db import OperationalError
from django.db.models import Sum
from django.test import Client
from django.test.utils import override_settings

from quotas.backends import get_backend, process_flusher, reset_backends
from quotas.contract import Backend, Charge, Subject
from quotas.flusher import Flusher
from quotas.ledger import Batch, ledger_apply, restore_state
from quotas.meter import process_meter
from quotas.models import Account, CounterEpoch, LedgerBatch, UsageRecord
from quotas.policy import parse_quotas, parse_rates
from quotas.redis_backend import RedisBackend
from tests.conftest import bearer
from tests.factories import issue_key
from tests.quotas.conftest import MEMORY_CACHES
from tests.redis_server import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_leases() -> Iterator[None]:
    # Every request goes to Redis: a restart in the middle of a test then
    # meets the next request, not a lease the process still holds.
    with override_settings(RATELIMIT_LEASES=False):
        yield


def ledger_units(account_id: int | None = None) -> int:
    rows = UsageRecord.objects.all() if account_id is None else UsageRecord.objects.filter(account_id=account_id)
    return rows.aggregate(total=Sum("units"))["total"] or 0


def ledger_requests(account_id: int) -> int:
    return UsageRecord.objects.filter(account_id=account_id).aggregate(total=Sum("requests"))["total"] or 0


def pings(client: Client, key: str, n: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    for _ in range(n):
        status = client.get("/api/v1/ping", **bearer(key)).status_code
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def used(client: Client, key: str) -> dict[str, dict[str, int]]:
    body = client.get("/api/v1/usage", **bearer(key)).json()
    return {limit["name"]: limit for limit in body["limits"]}


def flush() -> None:
    Flusher(backend=get_backend).flush()


def test_usage_and_limits_survive_a_redis_restart_that_kept_nothing(client: Client, own_redis: RedisServer) -> None:
    first = issue_key(rate_limits="100/h", quotas="150/month")
    account = first.api_key.account
    assert pings(client, first.key, 101) == {200: 100, 429: 1}
    flush()
    assert ledger_units(account.pk) == 100 and ledger_requests(account.pk) == 100

    own_redis.restart()  # nothing on disk: Redis comes back empty
    assert own_redis.client().dbsize() == 0

    # The key limited to 100/h gets nothing more this hour...
    assert pings(client, first.key, 5) == {429: 5}
    # ...the account's quota shows what was used, and only what is left is spent.
    month = used(client, first.key)["monthly-quota"]
    assert (month["used"], month["remaining"]) == (100, 50)
    second = issue_key(account)
    assert pings(client, second.key, 60) == {200: 50, 429: 10}
    month = used(client, second.key)["monthly-quota"]
    assert (month["used"], month["remaining"]) == (150, 0)
    flush()
    assert ledger_units(account.pk) == 150


def test_a_missing_account_is_restored_before_it_is_admitted(client: Client, own_redis: RedisServer) -> None:
    issued = issue_key(rate_limits="", quotas="10/day")
    account_id = issued.api_key.account_id
    assert pings(client, issued.key, 7) == {200: 7}
    flush()
    # Only this account's hash is gone (evicted, expired): the others keep theirs.
    own_redis.client().delete(f"tg:{{a{account_id}}}")
    assert pings(client, issued.key, 5) == {200: 3, 429: 2}


def test_usage_not_flushed_is_what_a_loss_takes(client: Client, own_redis: RedisServer) -> None:
    issued = issue_key(rate_limits="", quotas="100/day")
    assert pings(client, issued.key, 10) == {200: 10}
    flush()
    assert pings(client, issued.key, 4) == {200: 4}  # in Redis only
    own_redis.restart()
    assert used(client, issued.key)["daily-quota"]["used"] == 10


def test_the_usage_of_an_account_evicted_alone_still_counts(own_redis: RedisServer) -> None:
    # The hash is gone but the usage hash not yet flushed is still there
    # (eviction takes keys one at a time): it is added to the ledger's.
    account = issue_key(rate_limits="", quotas="100/day").api_key.account
    backend = get_backend()
    who = Subject(account.pk, 1, backend.generation(account.pk), (), parse_quotas("100/day"))
    now_ms = int(time.time() * 1000)
    assert backend.charge(who, Charge(1, 30), now_ms).allowed
    own_redis.client().delete(f"tg:{{a{account.pk}}}")
    assert backend.usage([account.pk]) == {account.pk: {"day": 0, "month": 0}}
    backend.generation(account.pk)
    assert backend.usage([account.pk])[account.pk]["day"] == 30


def test_a_refund_after_a_restart_never_takes_units_used_since(client: Client, own_redis: RedisServer) -> None:
    issued = issue_key(rate_limits="", quotas="10000/day")
    account_id = issued.api_key.account_id
    backend = get_backend()
    who = Subject(account_id, issued.api_key.pk, backend.generation(account_id), (), parse_quotas("10000/day"))
    reserved_at = time.time()
    assert backend.charge(who, Charge(1, 5000), int(reserved_at * 1000)).allowed  # a job queued
    flush()
    own_redis.restart()
    assert pings(client, issued.key, 30) == {200: 30}  # used after the restart
    backend.refund(account_id, 5000, at=reserved_at)  # the job is cancelled
    # The counters restored from the ledger held the reservation; the refund
    # takes nothing from them (they also hold the 30 used since)...
    assert backend.usage([account_id])[account_id]["day"] == 5030
    # ...and the ledger, which holds the reservation, records the refund.
    flush()
    assert ledger_units(account_id) == 30
    refund = UsageRecord.objects.get(account_id=account_id, key_id=0)
    assert (refund.units, refund.refunded) == (-5000, 5000)


def test_a_refund_of_a_reservation_lost_with_redis_is_dropped(client: Client, own_redis: RedisServer) -> None:
    issued = issue_key(rate_limits="", quotas="10000/day")
    account_id = issued.api_key.account_id
    backend = get_backend()
    who = Subject(account_id, issued.api_key.pk, backend.generation(account_id), (), parse_quotas("10000/day"))
    reserved_at = time.time()
    assert backend.charge(who, Charge(1, 5000), int(reserved_at * 1000)).allowed
    own_redis.restart()  # before any flush: the reservation is lost
    assert pings(client, issued.key, 30) == {200: 30}
    backend.refund(account_id, 5000, at=reserved_at)
    assert backend.usage([account_id])[account_id]["day"] == 30
    flush()
    assert ledger_units(account_id) == 30
    assert not UsageRecord.objects.filter(account_id=account_id, key_id=0).exists()


def test_a_refund_in_the_same_counters_reaches_the_ledger(backend: Backend) -> None:
    account = issue_key(rate_limits="", quotas="10000/day").api_key.account
    who = Subject(account.pk, 5, backend.generation(account.pk), (), parse_quotas("10000/day"))
    reserved_at = time.time()
    assert backend.charge(who, Charge(1, 700), int(reserved_at * 1000)).allowed
    backend.refund(account.pk, 200, at=reserved_at)
    assert backend.usage([account.pk])[account.pk]["day"] == 500
    Flusher(backend=lambda: backend).flush()
    assert ledger_units(account.pk) == 500
    assert UsageRecord.objects.get(account_id=account.pk, key_id=0).refunded == 200


def test_each_batch_is_applied_once_whoever_applies_it(backend: Backend) -> None:
    account = issue_key(rate_limits="", quotas="").api_key.account
    who = Subject(account.pk, 9, backend.generation(account.pk), (), ())
    now_ms = int(time.time() * 1000)
    for _ in range(20):
        backend.charge(who, Charge(1, 3), now_ms)
    batches = backend.drain()
    assert [batch.units for batch in batches] == [60]
    # A flusher killed before it acknowledged: the same batch is handed out again.
    again = backend.drain()
    assert [(batch.token, batch.units) for batch in again] == [(batches[0].token, 60)]
    ledger_apply(batches=batches)
    ledger_apply(batches=again)  # a second flusher with the same batch
    assert ledger_units(account.pk) == 60 and ledger_requests(account.pk) == 20
    backend.charge(who, Charge(1, 3), now_ms)  # comes after: a new batch, once the old one is acknowledged
    assert [batch.token for batch in backend.drain()] == [batches[0].token]
    backend.ack(again)
    Flusher(backend=lambda: backend).flush()
    assert ledger_units(account.pk) == 63
    assert backend.drain() == []
    assert LedgerBatch.objects.filter(account_id=account.pk).count() == 2


def test_memory_and_redis_restore_the_same_counters(backend: Backend) -> None:
    account = issue_key(rate_limits="10/h", quotas="100/day, 1000/month").api_key.account
    key_id = account.api_keys.get().pk
    who = Subject(account.pk, key_id, backend.generation(account.pk), parse_rates("10/h"), parse_quotas("100/day"))
    now_ms = int(time.time() * 1000)
    for _ in range(4):
        assert backend.charge(who, Charge(1, 5), now_ms).allowed
    Flusher(backend=lambda: backend).flush()
    lose(backend)
    fresh = Subject(account.pk, key_id, backend.generation(account.pk), who.rates, who.quotas)
    restored_ms = int(time.time() * 1000) + 1
    # The 4 requests of the day, taken as made just now (at the restore).
    decision = backend.charge(fresh, Charge(0, 0), restored_ms)
    assert [state.remaining for state in decision.states] == [6, 80]


def lose(backend: Backend) -> None:
    """Everything the backend held in memory or Redis is gone."""
    if isinstance(backend, RedisBackend):
        backend.client().flushall()
    else:
        backend._hashes.clear()  # type: ignore[attr-defined]
        backend._pending.clear()  # type: ignore[attr-defined]


def test_a_month_rolls_over(own_redis: RedisServer) -> None:
    account = issue_key(rate_limits="", quotas="1000/day, 5000/month").api_key.account
    backend = get_backend()
    november = int(dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=dt.UTC).timestamp() * 1000)
    december = november + 2000
    who = Subject(account.pk, 3, backend.generation(account.pk), (), parse_quotas("1000/day, 5000/month"))
    assert backend.charge(who, Charge(1, 40), november).allowed
    assert backend.charge(who, Charge(1, 2), december).allowed
    flush()
    days = dict(UsageRecord.objects.filter(account_id=account.pk).values_list("day", "units"))
    assert days == {dt.date(2026, 11, 30): 40, dt.date(2026, 12, 1): 2}
    # Restored on the 1st, the month and the day are December's alone.
    state = restore_state(account_id=account.pk, now_ms=december + 1000)
    assert (state.day_units, state.month_units) == (2, 2)
    state = restore_state(account_id=account.pk, now_ms=november)
    assert (state.day_units, state.month_units) == (40, 40)


def test_a_redis_that_lost_its_data_is_noticed(own_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    flusher = Flusher(backend=get_backend)
    assert flusher.flush().lost is False
    assert flusher.flush().lost is False
    own_redis.restart()
    with caplog.at_level(logging.WARNING, logger="tollgate.quotas.ledger"):
        assert flusher.flush().lost is True
    assert "Redis lost its data" in caplog.text
    assert CounterEpoch.objects.latest().lost
    # Another flusher (another worker) sees the same epoch: noticed once.
    assert Flusher(backend=get_backend).flush().lost is False
    assert CounterEpoch.objects.filter(lost=True).count() == 1


def test_the_process_flusher_is_a_thread_that_flushes_until_stopped(client: Client, own_redis: RedisServer) -> None:
    issued = issue_key(rate_limits="", quotas="")
    with override_settings(USAGE_FLUSH_INTERVAL=0.05):
        flusher = process_flusher()
        flusher.start()
        try:
            assert pings(client, issued.key, 12) == {200: 12}
            deadline = time.monotonic() + 10
            while ledger_units() < 12 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            flusher.stop()
    assert ledger_units() == 12


def test_a_batch_from_redis_parses_its_fields() -> None:
    batch = Batch.from_fields(4, {"#": "t", "@": "17", "9:20000:r": "2", "9:20000:d": "3", "0:20000:f": "3", "x": "1"})
    assert (batch.token, batch.drained_ms) == ("t", 17)
    assert batch.entries == {(9, 20000): [2, 5, 0], (0, 20000): [0, 0, 3]}


def test_meter_survives_the_flusher(client: Client, own_redis: RedisServer) -> None:
    # The request path is untouched by a flush: a drained account is charged
    # as before (a new usage hash starts).
    issued = issue_key(rate_limits="", quotas="50/day")
    assert pings(client, issued.key, 5) == {200: 5}
    flush()
    assert pings(client, issued.key, 5) == {200: 5}
    assert process_meter() is process_meter()
    flush()
    assert ledger_units(Account.objects.get().pk) == 10


def test_demo_mode_flushes_to_the_ledger_and_restores_after_a_restart(client: Client) -> None:
    reset_backends()
    with override_settings(DEMO_MODE=True, CACHES=MEMORY_CACHES, REDIS_URL="", USAGE_FLUSH_INTERVAL=0.05):
        issued = issue_key(rate_limits="", quotas="20/day")
        flusher = Flusher(backend=get_backend)
        flusher.start()
        try:
            assert pings(client, issued.key, 12) == {200: 12}
            deadline = time.monotonic() + 10
            while ledger_units() < 12 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            flusher.stop()
        assert ledger_units() == 12
        reset_backends()  # the process restarts: its counters are gone
        process_meter.cache_clear()
        assert used(client, issued.key)["daily-quota"]["used"] == 12
        assert pings(client, issued.key, 10) == {200: 8, 429: 2}
    reset_backends()


def test_without_the_ledger_a_lost_account_is_not_admitted(client: Client, own_redis: RedisServer) -> None:
    issued = issue_key(rate_limits="", quotas="10/day")
    assert pings(client, issued.key, 3) == {200: 3}
    flush()
    own_redis.restart()
    # The database does not answer the restore: 503, nothing admitted, nothing created.
    with mock.patch("quotas.redis_backend.restore_state", side_effect=OperationalError("database down")):
        response = client.get("/api/v1/ping", **bearer(issued.key))
    assert response.status_code == 503 and response.json()["error"]["code"] == "service_unavailable"
    assert own_redis.client().keys("tg:{a*}") == []
    assert used(client, issued.key)["daily-quota"]["used"] == 3
