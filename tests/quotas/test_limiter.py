"""One behaviour suite, run against both counter backends (Redis and memory).

Time is injected through ``now=`` (epoch seconds); nothing sleeps.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from unittest import mock

import pytest

from quotas.contract import Backend, Charge, StaleGeneration, Subject
from quotas.decision import Decision
from quotas.policy import parse_quotas, parse_rates

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()


def subject(backend: Backend, rates: str = "", quotas: str = "", *, account_id: int = 1, key_id: int = 1) -> Subject:
    return Subject(account_id, key_id, backend.generation(account_id), parse_rates(rates), parse_quotas(quotas))


def charge(
    backend: Backend, who: Subject, requests: int = 1, units: int = 1, *, now: float, **lease: object
) -> Decision:
    """One call at ``now`` (epoch seconds); ``lease`` holds Charge's lease and give-back fields."""
    return backend.charge(who, Charge(requests, units, **lease), round(now * 1000))  # type: ignore[arg-type]


def admitted(backend: Backend, who: Subject, n: int, *, now: float, units: int = 1) -> int:
    return sum(charge(backend, who, units=units, now=now).allowed for _ in range(n))


def state(decision: Decision, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in decision.states if s.name == name)


def test_burst_is_the_count_then_429_with_retry_after(backend: Backend) -> None:
    who = subject(backend, "10/s")
    assert admitted(backend, who, 10, now=T0) == 10
    rejected = charge(backend, who, now=T0)
    assert not rejected.allowed
    assert rejected.violated is not None and rejected.violated.name == "per-second"
    assert rejected.retry_after == 1  # 100 ms, rounded up


@pytest.mark.parametrize("count", [1, 3, 7, 9, 13, 99, 101, 997])
def test_burst_is_exact_for_counts_that_do_not_divide_the_period(backend: Backend, count: int) -> None:
    who = subject(backend, f"{count}/m")
    assert admitted(backend, who, count + 5, now=T0) == count


@pytest.mark.parametrize("elapsed", [0.0, 0.099, 0.1, 0.25, 0.999, 1.0, 3.7])
def test_admits_burst_plus_elapsed_time_times_rate(backend: Backend, elapsed: float) -> None:
    who = subject(backend, "10/s")
    assert admitted(backend, who, 50, now=T0) == 10
    # 10/s refills one request every 100 ms, exactly.
    assert admitted(backend, who, 50, now=T0 + elapsed) == min(10, round(elapsed * 1000) // 100)


def test_waiting_retry_after_is_enough(backend: Backend) -> None:
    rng = random.Random(7)
    for case in range(40):
        spec = rng.choice(["3/s", "7/m", "100/m", "13/5s", "1/h"])
        who = subject(backend, spec, account_id=100 + case, key_id=case)
        now = T0 + rng.random() * 10
        while charge(backend, who, now=now).allowed:
            pass
        rejected = charge(backend, who, now=now)
        assert not rejected.allowed
        assert charge(backend, who, now=now + rejected.retry_after).allowed, spec


def test_rejection_by_one_limit_consumes_nothing_from_the_others(backend: Backend) -> None:
    who = subject(backend, "5/s, 8/m", "1000/day")
    assert admitted(backend, who, 5, now=T0) == 5
    assert admitted(backend, who, 3, now=T0 + 1) == 3
    rejected = charge(backend, who, now=T0 + 1)  # per-minute is now exhausted
    assert not rejected.allowed and rejected.violated.name == "per-minute"  # type: ignore[union-attr]
    assert state(rejected, "per-second").remaining == 2
    assert state(rejected, "daily-quota").remaining == 992
    peek = charge(backend, who, requests=0, units=0, now=T0 + 1)
    assert state(peek, "per-second").remaining == 2
    assert state(peek, "daily-quota").remaining == 992


def test_exhausted_quota_consumes_no_rate(backend: Backend) -> None:
    who = subject(backend, "10/m", "3/day")
    assert admitted(backend, who, 3, now=T0) == 3
    for _ in range(5):
        decision = charge(backend, who, now=T0)
        assert not decision.allowed and decision.violated.kind == "quota"  # type: ignore[union-attr]
    assert state(charge(backend, who, requests=0, units=0, now=T0), "per-minute").remaining == 7


def test_daily_quota_rolls_at_utc_midnight(backend: Backend) -> None:
    who = subject(backend, "", "3/day")
    before_midnight = datetime(2026, 11, 26, 23, 59, 59, 999000, tzinfo=UTC).timestamp()
    assert admitted(backend, who, 3, now=before_midnight - 3600) == 3
    rejected = charge(backend, who, now=before_midnight)
    assert not rejected.allowed
    assert rejected.retry_after == 1
    assert rejected.violated.reset_ms == 1  # type: ignore[union-attr]
    assert admitted(backend, who, 5, now=before_midnight + 0.001) == 3


@pytest.mark.parametrize(
    ("last_moment", "days"),
    [
        (datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=UTC), 30),
        (datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), 31),
        (datetime(2028, 2, 29, 23, 59, 59, 999000, tzinfo=UTC), 29),
    ],
)
def test_monthly_quota_rolls_at_month_end(backend: Backend, last_moment: datetime, days: int) -> None:
    who = subject(backend, "", "2/month")
    end = last_moment.timestamp()
    assert admitted(backend, who, 2, now=end - 20 * 86400) == 2
    rejected = charge(backend, who, now=end)
    assert not rejected.allowed and rejected.violated.window == days * 86400  # type: ignore[union-attr]
    assert admitted(backend, who, 3, now=end + 0.001) == 2


def test_daily_and_monthly_quotas_count_together(backend: Backend) -> None:
    who = subject(backend, "", "5/day, 7/month")
    assert admitted(backend, who, 9, now=T0) == 5
    assert admitted(backend, who, 9, now=T0 + 86400) == 2


def test_quota_cost_counts_units(backend: Backend) -> None:
    who = subject(backend, "10/s", "100/day")
    first = charge(backend, who, units=60, now=T0)
    assert first.allowed and state(first, "daily-quota").remaining == 40
    second = charge(backend, who, units=41, now=T0)
    assert not second.allowed and second.violated.name == "daily-quota"  # type: ignore[union-attr]
    assert charge(backend, who, units=40, now=T0).allowed
    assert state(charge(backend, who, requests=0, units=0, now=T0), "per-second").remaining == 8


def test_quotas_are_per_account_rates_per_key(backend: Backend) -> None:
    first = subject(backend, "2/m", "3/day", account_id=5, key_id=50)
    second = subject(backend, "2/m", "3/day", account_id=5, key_id=51)
    assert admitted(backend, first, 5, now=T0) == 2
    assert admitted(backend, second, 5, now=T0) == 1  # its own rate, the account's quota


def test_reported_remaining_and_reset(backend: Backend) -> None:
    who = subject(backend, "100/m", "1000/day")
    decision = charge(backend, who, now=T0)
    per_minute = state(decision, "per-minute")
    assert (per_minute.limit, per_minute.window, per_minute.remaining, per_minute.reset_ms) == (100, 60, 99, 600)
    daily = state(decision, "daily-quota")
    assert (daily.limit, daily.window, daily.remaining, daily.reset) == (1000, 86400, 999, 12 * 3600)
    assert decision.states[decision.reply.tightest - 1] == per_minute  # what X-RateLimit-* describe


def test_peek_never_rejects_and_writes_nothing(backend: Backend) -> None:
    who = subject(backend, "1/m", "1/day")
    assert charge(backend, who, now=T0).allowed
    for _ in range(3):
        peek = charge(backend, who, requests=0, units=0, now=T0)
        assert peek.allowed
        assert [s.remaining for s in peek.states] == [0, 0]
    assert charge(backend, who, units=0, now=T0 + 60).allowed  # the rate refilled; nothing else moved


def test_a_plan_without_limits_admits_everything(backend: Backend) -> None:
    who = subject(backend)
    decision = charge(backend, who, now=T0)
    assert decision.allowed and decision.states == () and decision.reply.tightest == 0


def test_invalidation_makes_the_next_charge_stale(backend: Backend) -> None:
    who = subject(backend, "10/s", account_id=9)
    assert charge(backend, who, now=T0).allowed
    backend.invalidate([9])
    with pytest.raises(StaleGeneration):
        charge(backend, who, now=T0)
    fresh = Subject(9, who.key_id, backend.generation(9), who.rates, who.quotas)
    assert fresh.generation != who.generation
    assert state(charge(backend, fresh, now=T0), "per-second").remaining == 8  # counts survive


def test_refund_gives_back_units_in_the_current_window_only(backend: Backend) -> None:
    with mock.patch("time.time", return_value=T0 - 3 * 86400):  # the counters exist since before T0
        who = subject(backend, "", "100/day, 1000/month", account_id=3)
    assert charge(backend, who, units=70, now=T0).allowed
    backend.refund(3, 50, at=T0)
    assert backend.usage([3], now=T0) == {3: {"day": 20, "month": 20}}
    backend.refund(3, 500, at=T0)  # never below zero
    assert backend.usage([3], now=T0) == {3: {"day": 0, "month": 0}}
    assert charge(backend, who, units=30, now=T0).allowed
    backend.refund(3, 30, at=T0 - 86400)  # yesterday's window is gone; this month's is the same
    assert backend.usage([3], now=T0) == {3: {"day": 30, "month": 0}}


def test_usage_reads_today_and_this_month(backend: Backend) -> None:
    who = subject(backend, "", "100/day, 1000/month", account_id=4)
    charge(backend, who, units=5, now=T0 - 86400)
    charge(backend, who, units=7, now=T0)
    assert backend.usage([4, 99], now=T0) == {4: {"day": 7, "month": 12}, 99: {"day": 0, "month": 0}}


def test_traffic_counts_admitted_requests_per_minute_and_per_key(backend: Backend) -> None:
    first = subject(backend, "1000/s", "", account_id=20, key_id=201)
    second = subject(backend, "1000/s", "5/day", account_id=21, key_id=211)
    minute = T0 - T0 % 60
    admitted(backend, first, 3, now=minute - 70 * 60)  # 70 minutes ago: slots of an older lap
    admitted(backend, first, 4, now=minute - 59 * 60 + 1)  # the oldest minute shown
    admitted(backend, first, 2, now=minute + 30)
    admitted(backend, second, 9, now=minute + 31)  # 5 admitted, 4 rejected by the quota
    charge(backend, first, requests=0, units=0, now=minute + 32)  # a peek is not a request
    traffic = backend.traffic({20: [201], 21: [211, 212]}, now=minute + 40)
    assert len(traffic.per_minute) == 60
    assert traffic.per_minute[0] == (int(minute) - 59 * 60, 4)
    assert traffic.per_minute[-1] == (int(minute), 7)
    assert sum(count for _, count in traffic.per_minute) == 11
    assert traffic.per_key == {201: 6, 211: 5, 212: 0}


def test_a_charge_from_a_window_already_closed_consumes_nothing(backend: Backend) -> None:
    # Two processes whose clocks differ by a few ms at midnight: once the
    # account counts in the new day, a charge stamped with the old day would
    # overwrite the new day's count; it is refused (retry in 1 s) instead.
    who = subject(backend, "1000/s", "5/day")
    midnight = datetime(2026, 11, 27, tzinfo=UTC).timestamp()
    assert admitted(backend, who, 3, now=midnight + 0.002) == 3
    late = charge(backend, who, now=midnight - 0.001)
    assert not late.allowed and late.violated.name == "daily-quota" and late.retry_after == 1  # type: ignore[union-attr]
    assert charge(backend, who, units=0, now=midnight - 0.001).allowed  # nothing to count: served
    assert admitted(backend, who, 5, now=midnight + 0.003) == 2  # the new day's count is whole
