"""The flusher as users run it: in ``manage.py flush_usage`` and inside the
real ``rqworker``, killed with SIGKILL mid-flush and run twice at once, on a
private Redis and the test database. The ledger must equal what was admitted,
exactly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction
from django.db.models import Sum

from quotas.backends import get_backend
from quotas.contract import Charge, Subject
from quotas.models import LedgerBatch, UsageRecord
from quotas.policy import parse_quotas, parse_rates
from tests.factories import issue_key
from tests.processes import ROOT, database_url, service_env
from tests.redis_server import RedisServer
from tests.validation.stack import wait_for, worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def flusher_env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return service_env(REDIS_URL=redis.url, DATABASE_URL=database_url(), **extra)


def flusher(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "flush_usage", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def sigkill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()


def flush_once(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "flush_usage", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def ledger() -> tuple[int, int]:
    totals = UsageRecord.objects.aggregate(requests=Sum("requests"), units=Sum("units"))
    return totals["requests"] or 0, totals["units"] or 0


class Traffic:
    """Charges straight on the backend (no HTTP), counting what is admitted."""

    def __init__(self, accounts: int = 3, keys: int = 4) -> None:
        self.subjects = []
        backend = get_backend()
        for _ in range(accounts):
            account = issue_key(rate_limits="", quotas="").api_key.account
            for key in range(keys):
                self.subjects.append(
                    Subject(account.pk, 100 + key, backend.generation(account.pk), parse_rates(""), parse_quotas(""))
                )
        self.requests = self.units = 0
        self.rng = random.Random(12)

    def run(self, n: int) -> None:
        backend = get_backend()
        for _ in range(n):
            who = self.rng.choice(self.subjects)
            units = self.rng.choice([1, 1, 1, 5, 40])
            if backend.charge(who, Charge(1, units), int(time.time() * 1000)).allowed:
                self.requests += 1
                self.units += units


@contextmanager
def ledger_write_lock() -> Iterator[None]:
    """Hold the ledger's tables against writers (readers go on): a flusher
    that has drained its batches then waits in the middle of its flush."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {LedgerBatch._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        else:  # SQLite: one writer at a time, the others wait (busy timeout)
            LedgerBatch.objects.create(account_id=0, token="lock", drained_ms=0)
        yield
        transaction.set_rollback(True)


def test_a_flusher_killed_mid_flush_loses_nothing_and_counts_nothing_twice(own_redis: RedisServer) -> None:
    env = flusher_env(own_redis)
    flush_once(env)  # the epoch is recorded: the next pass writes only the ledger
    traffic = Traffic()
    traffic.run(300)
    with ledger_write_lock():
        process = flusher(env, "--once")
        # It has handed itself the batches (Redis now holds them as :b) and
        # waits to write them: kill it there.
        wait_for(lambda: own_redis.client().keys("tg:{a*}:b"), timeout=30)
        time.sleep(0.3)
        sigkill(process)
    assert ledger() == (0, 0)
    traffic.run(100)  # more usage while the old batches wait in Redis
    flush_once(env)
    flush_once(env)  # the batches left by the killed one went first; now the new usage
    assert ledger() == (traffic.requests, traffic.units)
    assert own_redis.client().keys("tg:{a*}:[ub]") == []


def test_two_flushers_at_once_killed_at_random_count_exactly(own_redis: RedisServer) -> None:
    traffic = Traffic()
    env = flusher_env(own_redis, USAGE_FLUSH_INTERVAL="0.02")
    running = [flusher(env), flusher(env)]
    rng = random.Random(7)
    kills = 0
    try:
        next_kill = time.monotonic() + 2.5  # each needs about a second to start
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            traffic.run(20)
            if time.monotonic() >= next_kill:
                victim = rng.randrange(2)
                sigkill(running[victim])  # wherever it is in its flush
                kills += 1
                running[victim] = flusher(env)
                next_kill = time.monotonic() + 1.0 + rng.random() * 1.5
        # Both running again: they catch up with everything that reached Redis.
        wait_for(lambda: not own_redis.client().keys("tg:{a*}:[ub]"), timeout=30)
    finally:
        for process in running:
            sigkill(process)
    assert kills >= 4
    assert LedgerBatch.objects.count() > 10  # the running flushers did the work
    assert ledger() == (traffic.requests, traffic.units)


def test_the_worker_process_hosts_the_flusher(own_redis: RedisServer) -> None:
    traffic = Traffic(accounts=1, keys=2)
    env = flusher_env(own_redis, USAGE_FLUSH_INTERVAL="0.1")
    with worker(env) as process:
        traffic.run(50)
        wait_for(lambda: ledger() == (traffic.requests, traffic.units), timeout=30)
        process.kill()  # SIGKILL, as a platform stops a dyno that hangs
    traffic.run(10)
    with worker(env):
        wait_for(lambda: ledger() == (traffic.requests, traffic.units), timeout=30)
