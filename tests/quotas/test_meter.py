"""The process meter: leases as a process takes and spends them (their size,
expiry, give-back, headers), the stale-generation rule and the Redis-down
rule, each on a Meter built for the test with its own clock, against the
suite's private Redis."""

from __future__ import annotations

import os
import time

import pytest
from django.test.utils import override_settings

from project.errors import ServiceUnavailable
from quotas.contract import Backend, Charge, Subject
from quotas.decision import Decision
from quotas.exceptions import LimitExceeded
from quotas.meter import Meter, RequestMeter
from quotas.outage import Outage
from quotas.policy import parse_quotas, parse_rates
from quotas.records import KeyRecord
from quotas.redis_backend import RedisBackend
from tests.quotas.test_limiter import T0
from tests.redis_server import RedisServer


class Clock:
    """Wall and monotonic time that move only when told to."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - T0

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Counting(RedisBackend):
    """The Redis backend, counting its charges (and optionally changing the
    account before each, as an admin saving it in a loop would)."""

    def __init__(self, storm: int | None = None) -> None:
        super().__init__()
        self.calls: list[Charge] = []
        self.storm = storm

    def charge(self, subject: Subject, charge: Charge, now_ms: int) -> Decision:
        self.calls.append(charge)
        if subject.account_id == self.storm:
            self.invalidate([subject.account_id])
        return super().charge(subject, charge, now_ms)


def record(backend: Backend, rates: str, quotas: str = "", *, account_id: int = 1, key_id: int = 1) -> KeyRecord:
    subject = Subject(account_id, key_id, backend.generation(account_id), parse_rates(rates), parse_quotas(quotas))
    return KeyRecord(
        key_id,
        f"{key_id:08d}",
        "",
        "0" * 64,
        account_id,
        "a",
        "p",
        True,
        None,
        1,
        1,
        subject,
        loaded_at=time.monotonic(),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
def meter(counting: Counting, clock: Clock) -> Meter:
    return Meter(backend=lambda: counting, clock=clock, monotonic=clock.monotonic)


def ping(
    meter: Meter, who: KeyRecord, clock: Clock, n: int = 1, *, every: float = 0.001, units: int = 1
) -> list[Decision]:
    decisions = []
    for _ in range(n):
        decision = RequestMeter(meter, who).charge(units=units)
        assert decision is not None
        decisions.append(decision)
        clock.advance(every)
    return decisions


def used_today(backend: Backend, who: KeyRecord, clock: Clock) -> int:
    return backend.usage([who.account_id], now=clock.now)[who.account_id]["day"]


def test_a_hot_key_leases_more_and_more_and_rarely_goes_to_redis(
    meter: Meter, counting: Counting, clock: Clock
) -> None:
    who = record(counting, "100000/s", "1000000000/day")
    ping(meter, who, clock, 2000)  # 1000 requests per second in this process
    sizes = [call.lease_requests for call in counting.calls if call.leasing]
    assert sizes[:5] == [5, 13, 29, 61, 125]  # doubling from nothing (a shorter lease than 10 ms is none)
    assert max(sizes) == 199  # 1000/s x 0.2 s
    assert len(counting.calls) < 2000 / 20
    assert used_today(counting, who, clock) == 2000 + meter.leases._leases[who.key_id].units


def test_a_key_seen_once_a_minute_never_leases(meter: Meter, counting: Counting, clock: Clock) -> None:
    who = record(counting, "100000/s", "1000000000/day")
    ping(meter, who, clock, 20, every=60)
    assert len(counting.calls) == 20 and not any(call.leasing for call in counting.calls)


def test_a_lease_is_not_served_past_its_expiry(meter: Meter, counting: Counting, clock: Clock) -> None:
    who = record(counting, "100000/s", "1000000000/day")
    ping(meter, who, clock, 400)
    lease = meter.leases._leases[who.key_id]
    assert lease.requests > 0
    clock.now = lease.expires_ms / 1000  # its last moment is just before this
    calls = len(counting.calls)
    ping(meter, who, clock)
    assert len(counting.calls) == calls + 1  # charged, not served from the lease


def test_the_next_charge_carries_the_give_back(meter: Meter, counting: Counting, clock: Clock) -> None:
    who = record(counting, "100000/s", "1000000000/day")
    ping(meter, who, clock, 400)
    left = meter.leases._leases[who.key_id].units
    assert left > 0
    clock.advance(1)  # the lease expired unused
    ping(meter, who, clock)
    carried = counting.calls[-1].give_back
    assert carried is not None and carried.units == left
    held = meter.leases._leases[who.key_id].units if who.key_id in meter.leases._leases else 0
    assert used_today(counting, who, clock) == 401 + held  # served, or held by the new lease


def test_an_unused_lease_is_given_back_alone_when_no_charge_comes(counting: Counting) -> None:
    meter = Meter(backend=lambda: counting)
    meter.leases.seconds, meter.leases.grace = 0.05, 0.0
    who = record(counting, "100000/s", "1000000000/day")
    for _ in range(200):
        RequestMeter(meter, who).charge()
    assert who.key_id in meter.leases._leases
    deadline = time.monotonic() + 5
    while used_today(counting, who, Clock(time.time())) != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert used_today(counting, who, Clock(time.time())) == 200
    assert counting.calls[-1].requests == 0 and counting.calls[-1].give_back is not None


def test_a_request_the_lease_cannot_pay_for_ends_it(meter: Meter, counting: Counting, clock: Clock) -> None:
    who = record(counting, "100000/s", "1000000000/day")
    ping(meter, who, clock, 400)
    left = meter.leases._leases[who.key_id].units
    ping(meter, who, clock, units=left + 1)  # a validation of more records than the lease holds
    assert counting.calls[-1].give_back is not None and counting.calls[-1].give_back.units == left
    reservation = RequestMeter(meter, who).charge(requests=0, units=50)  # a job's units: never leased
    assert reservation is not None and counting.calls[-1] == Charge(0, 50)


def test_a_leased_request_has_the_headers_of_the_charge_that_leased(
    meter: Meter, counting: Counting, clock: Clock
) -> None:
    who = record(counting, "100000/s", "1000000000/day")
    decisions = ping(meter, who, clock, 400)
    granting = [d for d in decisions if d.leased][-1]
    served = decisions[-1]
    assert served is granting  # the same headers, at most 0.25 s old
    assert clock.now * 1000 - granting.at_ms <= 250


def test_near_a_limit_every_request_is_charged_and_exact(meter: Meter, counting: Counting, clock: Clock) -> None:
    who = record(counting, "50/s")
    decisions = []
    for _ in range(60):
        try:
            decisions.append(RequestMeter(meter, who).charge())
        except LimitExceeded:
            break
    assert len(decisions) == 50 and len(counting.calls) == 51
    assert [d.states[0].remaining for d in decisions] == list(range(49, -1, -1))


def test_with_leases_off_every_request_is_one_charge(meter: Meter, counting: Counting, clock: Clock) -> None:
    who = record(counting, "100000/s", "1000000000/day")
    with override_settings(RATELIMIT_LEASES=False):
        ping(meter, who, clock, 300)
    assert len(counting.calls) == 300 and not any(call.leasing for call in counting.calls)


def test_forgetting_an_account_drops_its_leases(meter: Meter, counting: Counting, clock: Clock) -> None:
    who = record(counting, "100000/s", "1000000000/day")
    other = record(counting, "100000/s", "1000000000/day", account_id=2, key_id=2)
    ping(meter, who, clock, 200)
    ping(meter, other, clock, 200)
    meter.forget({who.account_id})
    assert set(meter.leases._leases) == {other.key_id}


def test_a_forked_child_does_not_serve_its_parents_leases(meter: Meter, counting: Counting, clock: Clock) -> None:
    who = record(counting, "100000/s", "1000000000/day")
    ping(meter, who, clock, 200)
    assert meter.leases._leases
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        try:
            os.write(write, b"1" if not meter.leases._leases else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert meter.leases._leases


def test_a_stale_generation_storm_fails_that_request_only(clock: Clock) -> None:
    storm = Counting(storm=1)
    meter = Meter(backend=lambda: storm, clock=clock, monotonic=clock.monotonic)
    changing = record(storm, "100/s", account_id=1, key_id=1)
    meter.records.reload = lambda prefix: record(storm, "100/s", account_id=1, key_id=1)  # type: ignore[method-assign]
    with pytest.raises(ServiceUnavailable):
        RequestMeter(meter, changing).charge()
    assert len(storm.calls) == 3  # reloaded and retried, then gave up
    assert not meter.outage.is_open  # every other account goes on
    calm = record(storm, "100/s", account_id=2, key_id=2)
    assert RequestMeter(meter, calm).charge() is not None


def test_redis_down_opens_the_breaker_for_a_second(own_redis: RedisServer, clock: Clock) -> None:
    backend = RedisBackend()
    outage = Outage(clock=clock.monotonic)
    meter = Meter(backend=lambda: backend, outage=outage, clock=clock, monotonic=clock.monotonic)
    who = record(backend, "100/s")
    own_redis.kill()
    with override_settings(RATELIMIT_FAIL_MODE="open"):
        assert RequestMeter(meter, who).charge() is None
        assert outage.is_open
        clock.advance(0.999)
        assert outage.is_open
        clock.advance(0.002)
        assert not outage.is_open
