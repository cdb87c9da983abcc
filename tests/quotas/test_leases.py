"""Leases in charge.lua (and its Python mirror), against both backends: when
one is granted, what it holds, and when a give-back is taken. Time is
injected in milliseconds; nothing sleeps. The reasoning these tests pin down
is in quotas/leases.py."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from quotas.codec import windows_at
from quotas.contract import Backend, Charge, GiveBack, StaleGeneration, Subject, rate_field
from quotas.decision import Decision
from quotas.memory import MemoryBackend
from quotas.policy import parse_quotas, parse_rates, window_at
from quotas.redis_backend import RedisBackend, account_key
from tests.quotas.reference import gcra_refusals, quota_excess
from tests.quotas.test_limiter import T0, state, subject

NOW = round(T0 * 1000)
LATE = 250  # ms: a lease's life


def charge(backend: Backend, who: Subject, at: int, requests: int = 1, units: int = 1, **lease: object) -> Decision:
    return backend.charge(who, Charge(requests, units, **lease), at)  # type: ignore[arg-type]


def lease(backend: Backend, who: Subject, at: int, k: int, u: int | None = None, life: int = LATE) -> Decision:
    """The request at ``at`` plus a lease of ``k`` more requests and ``u``
    (default ``k``) more units, expiring ``life`` ms later."""
    return charge(backend, who, at, lease_requests=k, lease_units=k if u is None else u, lease_expires_ms=at + life)


def give_back(decision: Decision, requests: int, units: int) -> GiveBack:
    return GiveBack(requests, units, decision.at_ms, decision.reply.runs, tuple(w.id for w in decision.windows))


def used_today(backend: Backend, who: Subject, at: int) -> int:
    return backend.usage([who.account_id], now=at / 1000)[who.account_id]["day"]


def set_field(backend: Backend, who: Subject, field: str, value: str) -> None:
    """Write a field of the account's hash the way another writer would."""
    if isinstance(backend, RedisBackend):
        backend.client().hset(account_key(who.account_id), field, value)
    else:
        assert isinstance(backend, MemoryBackend)
        backend._hashes[who.account_id][1][field] = value


def test_a_lease_far_from_the_limits_is_granted_and_counted_as_used(backend: Backend) -> None:
    who = subject(backend, "10000/s", "1000000/day")
    granted = lease(backend, who, NOW, 99)
    assert granted.allowed and granted.leased
    # Its 100 requests are placed after its expiry (250 ms): the bucket holds
    # 250 ms + 100 x 0.1 ms of debt, 2600 requests.
    assert state(granted, "per-second").remaining == 10000 - 2600
    assert state(granted, "daily-quota").remaining == 1000000 - 100
    assert used_today(backend, who, NOW) == 100
    assert backend.traffic({who.account_id: [who.key_id]}, now=NOW / 1000).per_key == {who.key_id: 100}


@pytest.mark.parametrize(
    ("rates", "quotas", "k", "u"),
    [
        ("1000/m", "", 20, 0),  # 64 x 21 requests are not left
        ("10000/s", "1000/day", 20, 20),  # 64 x 21 units are not left
        ("50/s", "", 1, 0),  # the lease's 250 ms hold 12 of 50 requests: 2 x 64 are not left
        ("100/h", "", 1, 0),  # a limit under 2 x 64 never leases: a burst on it is exact
    ],
)
def test_near_a_limit_the_request_is_charged_alone(backend: Backend, rates: str, quotas: str, k: int, u: int) -> None:
    who = subject(backend, rates, quotas)
    decision = lease(backend, who, NOW, k, u)
    assert decision.allowed and not decision.leased
    assert [s.remaining for s in decision.states] == [s.limit - 1 for s in decision.states]


def test_a_lease_never_crosses_a_quota_window(backend: Backend) -> None:
    who = subject(backend, "10000/s", "1000000/day")
    midnight = round(datetime(2026, 11, 27, tzinfo=UTC).timestamp() * 1000)
    assert not lease(backend, who, midnight - 100, 9, life=101).leased
    assert lease(backend, who, midnight - 100, 9, life=100).leased  # served before it ends


def test_under_admission_is_at_most_what_live_leases_hold(backend: Backend) -> None:
    # Another process holds 99 units of a lease: this one is refused exactly
    # when the units used plus those held reach the quota, no sooner; once
    # the lease gives back its unused units, they are admitted.
    who = subject(backend, "100000/s", "10000/day")
    granted = lease(backend, who, NOW, 99)  # 1 unit used, 99 held
    admitted = 0
    while charge(backend, who, NOW + 1, 1, 100).allowed:
        admitted += 100
    assert admitted == 9900  # 1 served by the lease's charge + 9900 + 99 held = 10000
    assert not charge(backend, who, NOW + 1).allowed
    charge(backend, who, NOW + 2, 0, 0, give_back=give_back(granted, 0, 99))
    assert sum(charge(backend, who, NOW + 3).allowed for _ in range(150)) == 99


def test_the_bucket_cannot_refill_under_a_live_lease(backend: Backend) -> None:
    # A lease charged as if its requests arrived at once would let the bucket
    # refill while they are still being served: at 249 ms a burst of other
    # processes would get the whole 1000 again, on top of the 9 leased.
    who = subject(backend, "1000/s")
    lease(backend, who, NOW, 9)
    burst = sum(charge(backend, who, NOW + 249).allowed for _ in range(1000))
    assert burst == 989  # (1000 - 260 + 249) ms / 1 ms
    served = [NOW] + [NOW + 249] * (9 + burst)  # the lease served at its last moment
    assert gcra_refusals(served, 1000, 1000) == 0


def test_a_give_back_returns_what_the_lease_did_not_use(backend: Backend) -> None:
    who = subject(backend, "10000/s", "1000000/day")
    granted = lease(backend, who, NOW, 99)
    back = charge(backend, who, NOW + 100, 0, 0, give_back=give_back(granted, 60, 60))
    # As if 40 had been charged: 250 ms + 40 x 0.1 ms of debt, 150 ms gone.
    assert state(back, "per-second").remaining == 10000 - (2500 + 40 - 1000)
    assert used_today(backend, who, NOW + 100) == 40
    assert backend.traffic({who.account_id: [who.key_id]}, now=NOW / 1000).per_key == {who.key_id: 40}


def test_a_give_back_after_a_clamp_takes_no_requests(backend: Backend) -> None:
    # A later lease whose expiry is past the TAT clamps it: the first lease's
    # slots are absorbed, and subtracting them would free slots others hold.
    who = subject(backend, "10000/s", "1000000/day")
    first = lease(backend, who, NOW, 99)
    lease(backend, who, NOW + 20, 99)  # TAT: 270 ms + 100 x 0.1 ms
    back = charge(backend, who, NOW + 30, 0, 0, give_back=give_back(first, 60, 60))
    assert state(back, "per-second").remaining == 10000 - (2700 + 100 - 300)
    assert used_today(backend, who, NOW) == 200 - 60  # units go back all the same


def test_a_give_back_is_bounded_by_the_slack_of_later_charges(backend: Backend) -> None:
    # After the lease (TAT 260 ms) a charge at 255 ms has 5 ms of slack: had
    # the lease taken 60 fewer, that charge would have clamped the TAT, so
    # giving back 6 ms would free a slot it holds; 5 ms is still exact.
    who = subject(backend, "10000/s")
    granted = lease(backend, who, NOW, 99)
    charge(backend, who, NOW + 255)  # TAT 260.1 ms
    refused = charge(backend, who, NOW + 255, 0, 0, give_back=give_back(granted, 60, 0))
    assert state(refused, "per-second").remaining == 9949  # (1000 - 5.1) ms / 0.1 ms, unchanged
    taken = charge(backend, who, NOW + 255, 0, 0, give_back=give_back(granted, 50, 0))
    assert state(taken, "per-second").remaining == 9999  # 5 ms given back
    again = charge(backend, who, NOW + 255, 0, 0, give_back=give_back(granted, 1, 0))
    assert state(again, "per-second").remaining == 9999  # the budget is spent


def test_a_quota_give_back_stays_in_the_leases_window(backend: Backend) -> None:
    midnight = round(datetime(2026, 11, 27, tzinfo=UTC).timestamp() * 1000)
    who = subject(backend, "10000/s", "1000000/day")
    granted = lease(backend, who, midnight - 1000, 9)  # 10 units on the 26th
    charge(backend, who, midnight + 100)  # 1 unit on the 27th: the field rolled
    charge(backend, who, midnight + 200, 0, 0, give_back=give_back(granted, 9, 9))
    assert used_today(backend, who, midnight + 200) == 1
    # Given back before the 27th counted anything, it lowers the 26th only.
    other = subject(backend, "10000/s", "1000000/day", account_id=2)
    granted = lease(backend, other, midnight - 1000, 9)
    charge(backend, other, midnight + 200, 0, 0, give_back=give_back(granted, 9, 9))
    assert used_today(backend, other, midnight - 1) == 1
    assert used_today(backend, other, midnight + 200) == 0


def test_a_give_back_never_reaches_a_rebuilt_hash(backend: Backend) -> None:
    # The counters were lost and the account counts again in the same
    # window: a give-back of the lost lease must not subtract those units.
    who = subject(backend, "10000/s", "1000000/day")
    granted = lease(backend, who, NOW, 99)
    if isinstance(backend, RedisBackend):
        backend.client().delete(account_key(who.account_id))
    else:
        assert isinstance(backend, MemoryBackend)
        backend._hashes.clear()
    rebuilt = Subject(who.account_id, who.key_id, backend.generation(who.account_id), who.rates, who.quotas)
    for _ in range(5):
        charge(backend, rebuilt, NOW + 10)
    with pytest.raises(StaleGeneration):
        charge(backend, who, NOW + 20, 0, 0, give_back=give_back(granted, 60, 60))
    assert used_today(backend, who, NOW) == 5


def test_a_write_without_the_bookkeeping_voids_it(backend: Backend) -> None:
    # Anything that moves the TAT without keeping the lease bookkeeping (an
    # older charge.lua during a deploy) makes every pending give-back moot.
    who = subject(backend, "10000/s")
    granted = lease(backend, who, NOW, 99)
    set_field(backend, who, rate_field(who.key_id, who.rates[0]), f"{NOW + 262}:0")
    back = charge(backend, who, NOW + 100, 0, 0, give_back=give_back(granted, 60, 0))
    assert state(back, "per-second").reset_ms == 162
    # The next lease starts a new run.
    assert lease(backend, who, NOW + 100, 9).reply.runs[0] > granted.reply.runs[0]


class _Agent:
    """A process in virtual time: its live lease, if any."""

    def __init__(self) -> None:
        self.lease: Decision | None = None
        self.left = (0, 0)  # requests, units
        self.expires = 0


def _adversary(backend: Backend, who: Subject, rng: random.Random, start: int, steps: int) -> list[tuple[int, int]]:
    """Five processes on one key in virtual time; returns (served ms, units)."""
    agents = [_Agent() for _ in range(5)]
    served: list[tuple[int, int]] = []
    now = start

    def request(agent: _Agent, units: int, *, may_lease: bool) -> None:
        if agent.lease is not None and now < agent.expires and agent.left[0] >= 1 and agent.left[1] >= units:
            agent.left = (agent.left[0] - 1, agent.left[1] - units)
            served.append((now, units))
            return
        back = give_back(agent.lease, *agent.left) if agent.lease is not None and any(agent.left) else None
        agent.lease = None
        k, u = (rng.choice([0, 1, 2, 3, 5, 8]), rng.choice([0, 1, 3, 9])) if may_lease else (0, 0)
        expires = now + rng.randint(1, 250)
        if rng.random() < 0.7:  # the meter never lets a lease cross a window; the script must not either
            expires = min([expires, *(w.end_ms for w in windows_at(who, now))])
        decision = charge(
            backend, who, now, 1, units, lease_requests=k, lease_units=u, lease_expires_ms=expires, give_back=back
        )
        if decision.allowed:
            served.append((now, units))
        if decision.leased:
            agent.lease, agent.left, agent.expires = decision, (k, u), expires

    for step in range(steps):
        # Small steps first (the scenario starts just before a UTC midnight), then any.
        now += rng.choice([0, 0, 1, 3, 10, 40] if step < 40 else [0, 0, 1, 3, 10, 40, 150, 600, 1500])
        agent = rng.choice(agents)
        action = rng.random()
        if action < 0.15:  # a burst: as many requests as it takes, at once
            for _ in range(rng.randint(5, 60)):
                request(agent, rng.choice([0, 1]), may_lease=False)
        elif action < 0.3 and agent.lease is not None:  # serve what is left, as late as it likes
            while agent.lease is not None and now < agent.expires and agent.left[0] >= 1:
                request(agent, 0, may_lease=False)
        elif action < 0.4 and agent.lease is not None and any(agent.left):  # the background thread
            charge(backend, who, now, 0, 0, give_back=give_back(agent.lease, *agent.left))
            agent.lease = None
        else:
            request(agent, rng.choice([0, 1, 1, 2]), may_lease=True)
    return served


@pytest.mark.parametrize(
    ("rates", "quotas"), [("10/s", ""), ("50/s", "300/day"), ("50/s, 200/m", "400/day"), ("7/s", "60/day, 1000/month")]
)
def test_adversarial_leases_in_virtual_time_never_over_admit(rates: str, quotas: str) -> None:
    # Five processes on one key, in virtual time, with a lease margin of 0
    # (leases right up to the limits): they ask for leases of random size
    # and life, serve them at any moment up to their expiry, burst, give back
    # what is left with a later charge or alone, across a UTC midnight.
    # Every request served must be one exact GCRA and exact quota counting
    # admit. Time is injected, so this explores timings real processes rarely
    # hit. Both backends.
    rng = random.Random(f"{rates}|{quotas}")
    midnight = round(datetime(2026, 11, 27, tzinfo=UTC).timestamp() * 1000)
    for backend in (RedisBackend(lease_margin=0), MemoryBackend(lease_margin=0)):
        for scenario in range(6):
            account = 900 + scenario
            who = Subject(account, 1, backend.generation(account), parse_rates(rates), parse_quotas(quotas))
            served = _adversary(backend, who, rng, midnight - rng.randint(0, 400), 300)
            times = [at for at, _ in served]
            for rate in who.rates:
                assert gcra_refusals(times, rate.count, rate.period_ms) == 0, (backend.name, scenario, str(rate))
            for quota in who.quotas:
                excess = quota_excess(served, quota.count, lambda at, q=quota: window_at(q.window, at).id)
                assert excess == 0, (backend.name, scenario, str(quota))
