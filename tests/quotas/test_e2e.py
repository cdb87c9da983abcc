"""The limiter as users run it: a real gunicorn with 4 workers, a real Redis,
hundreds of concurrent requests; with leases (the default) and without."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from quotas.services import api_key_revoke, plan_set
from tests.factories import issue_key
from tests.metrics_scrape import TOKEN, requests_of, scrape, value
from tests.processes import database_url, gunicorn, service_env
from tests.redis_server import RedisServer

# Load tests that measure a fault: one at a time (make test: --dist loadgroup).
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("fault-under-load")]

WORKERS = 4
BURST = 600


# A lease lives at most this long (quotas.leases.LEASE_SECONDS); the tests
# allow 0.1 s more for the clocks of two processes and the request in flight.
LEASE_BOUND = 0.25 + 0.1


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker, redis_server: RedisServer) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """4 workers with leases on (the default)."""
    with django_db_blocker.unblock():
        url = database_url()
    env = service_env(REDIS_URL=redis_server.url, DATABASE_URL=url, METRICS_TOKEN=TOKEN)
    with gunicorn(env, workers=WORKERS) as base:
        yield base


@pytest.fixture(scope="module")
def server_without_leases(django_db_setup: None, django_db_blocker, redis_server: RedisServer) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with django_db_blocker.unblock():
        url = database_url()
    env = service_env(REDIS_URL=redis_server.url, DATABASE_URL=url, RATELIMIT_LEASES="false")
    with gunicorn(env, workers=WORKERS) as base:
        yield base


@pytest.fixture(params=["leases", "no-leases"])
def either(request: pytest.FixtureRequest) -> str:
    """The server with leases, then the one without."""
    return request.getfixturevalue("server" if request.param == "leases" else "server_without_leases")


def burst(base: str, key: str, n: int, *, path: str = "/api/v1/ping", threads: int = 48) -> Counter[int]:
    local = threading.local()

    def one(_: int) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        return local.client.get(path).status_code

    with ThreadPoolExecutor(threads) as pool:
        return Counter(pool.map(one, range(n)))


def usage(base: str, key: str) -> dict[str, int]:
    body = httpx.get(f"{base}/api/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()
    return {limit["name"]: limit["remaining"] for limit in body["limits"]}


def test_concurrent_burst_admits_exactly_what_gcra_allows(either: str) -> None:
    key = issue_key(rate_limits="100/h", quotas="").key
    started = time.monotonic()
    statuses = burst(either, key, BURST)
    elapsed = time.monotonic() - started
    # Burst (100) plus elapsed time x rate (100 per 3600 s): exactly 100 unless the burst took 36 s.
    assert elapsed < 36
    assert statuses == Counter({200: 100, 429: BURST - 100})


def test_concurrent_burst_consumes_nothing_when_any_limit_rejects(either: str) -> None:
    key = issue_key(rate_limits="80/h", quotas="50/day").key
    statuses = burst(either, key, BURST)
    assert statuses == Counter({200: 50, 429: BURST - 50})
    # The 550 rejected requests (quota) took nothing from the rate limit.
    assert usage(either, key) == {"per-hour": 30, "daily-quota": 0}


def test_concurrent_costs_across_keys_of_one_account_share_the_quota(either: str) -> None:
    first = issue_key(rate_limits="1000/h", quotas="120/day")
    second = issue_key(account=first.api_key.account)
    results = []
    threads = [
        threading.Thread(target=lambda k=k: results.append(burst(either, k, 200))) for k in (first.key, second.key)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result[200] for result in results) == 120


class Hammer:
    """Requests in a loop from a few threads, recording (start, status, duration)."""

    def __init__(self, base: str, key: str, threads: int = 6) -> None:
        self.base, self.key, self.records = base, key, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=10) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.get("/api/v1/ping")
                    status, limit = response.status_code, response.headers.get("X-RateLimit-Limit")
                    if status >= 500:
                        limit = response.text
                except httpx.HTTPError:
                    status, limit = 0, None
                self.records.append((started, status, time.monotonic() - started, limit))

    def __enter__(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _leased_while(hammer: Hammer, base: str) -> int:
    """After a warm-up, how many requests of a second were served from
    leases: requests admitted less the limiter's round trips, as the
    workers' own metrics count them (Redis's command count would also hold
    the background scripts of all the module's servers: give-backs, the
    ledger's drains)."""

    def admitted_less_trips() -> float:
        found = scrape(base)
        trips = value(found, "tollgate_limiter_round_trip_seconds_count")
        return requests_of(found, route="api/v1/ping", outcome="admitted") - trips

    time.sleep(0.5)
    before = admitted_less_trips()
    time.sleep(1.0)
    return int(admitted_less_trips() - before)


def test_a_revoked_key_stops_on_every_worker_within_a_lease(server: str) -> None:
    issued = issue_key(rate_limits="100000/s", quotas="")
    with Hammer(server, issued.key) as hammer:
        leased_before = _leased_while(hammer, server)  # every worker has the key cached, and leases
        revoking_at = time.monotonic()
        api_key_revoke(prefix=issued.api_key.prefix)
        revoked_at = time.monotonic()
        time.sleep(1.0)
    assert leased_before > 0  # requests were served from leases
    before = [status for started, status, took, _ in hammer.records if started + took < revoking_at]
    after = [status for started, status, _, _ in hammer.records if started > revoked_at + LEASE_BOUND]
    assert set(before) == {200} and len(before) > 20
    assert set(after) == {401} and len(after) > 20


def test_a_plan_change_applies_on_every_worker_within_a_lease(server: str) -> None:
    issued = issue_key(rate_limits="100000/s", quotas="")
    with Hammer(server, issued.key) as hammer:
        leased_before = _leased_while(hammer, server)
        plan_set(name=issued.api_key.account.plan.name, rate_limits=["200000/s"])
        changed_at = time.monotonic()
        time.sleep(1.0)
    assert leased_before > 0
    after = {limit for started, _, _, limit in hammer.records if started > changed_at + LEASE_BOUND}
    assert after == {"200000"}


def test_redis_killed_and_paused_mid_traffic(own_redis: RedisServer) -> None:
    env = service_env(REDIS_URL=own_redis.url, DATABASE_URL=database_url())
    key = issue_key(rate_limits="100000/h", quotas="").key
    with gunicorn(env, workers=WORKERS) as base, Hammer(base, key) as hammer:
        time.sleep(0.5)
        own_redis.kill()
        killed_at = time.monotonic()
        time.sleep(2.0)
        # Each window ends when its end was asked for: start() returns only
        # once Redis answers, and it may answer a while before that.
        restarting_at = time.monotonic()
        own_redis.start()
        restarted_at = time.monotonic()
        time.sleep(2.5)
        own_redis.pause()
        paused_at = time.monotonic()
        time.sleep(1.5)
        resuming_at = time.monotonic()
        own_redis.resume()
        resumed_at = time.monotonic()
        time.sleep(2.5)
    records = hammer.records
    statuses = Counter(status for _, status, _, _ in records)
    assert set(statuses) <= {200, 503}, statuses  # never a 500, never a dropped connection
    # Requests answered while Redis was down (once the leases taken before
    # it went down have expired: they were counted, so they are served), and
    # those started well after it was back.
    during_kill = [
        status
        for started, status, took, _ in records
        if killed_at + LEASE_BOUND < started and started + took < restarting_at
    ]
    assert during_kill and set(during_kill) == {503}
    recovered = [status for started, status, _, _ in records if restarted_at + 2.0 < started < paused_at - 0.05]
    assert recovered and set(recovered) == {200}, [
        (round(started - restarted_at, 3), status, round(took, 3), (limit or "")[:30])
        for started, status, took, limit in records
        if restarted_at + 2.0 < started < paused_at - 0.05 and status != 200
    ]
    during_pause = [
        status for started, status, took, _ in records if paused_at + 0.6 < started and started + took < resuming_at
    ]
    assert during_pause and set(during_pause) == {503}
    after = [status for started, status, _, _ in records if started > resumed_at + 2.0]
    assert after and set(after) == {200}
    # Bounded by the 0.25 s timeouts and the breaker (redis-py alone would
    # wait a minute); the margin is for two loaded shared cores.
    assert max(duration for _, _, duration, _ in records) < 3.0
