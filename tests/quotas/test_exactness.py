"""Over-admission is 0, with leases and without: several processes charge
random traffic through their own meters on the suite's real Redis, each
recording when it served what; the served requests of all processes are then
replayed through exact GCRA (every rate limit of every key) and exact quota
counting (every window of the account), and every one of them must conform.

Trials cover a rate-bound key, a quota-bound account with two keys, two rate
limits at once, and a quota window rolling over mid-trial (the processes'
clocks are set so that UTC midnight falls inside it), each with every process
leasing, half of them, and none. In "greedy" mode the processes ask for
leases of random sizes and lives whatever their pace, and send bursts with
pauses between, so that leased requests are served late while other
processes burst: what the script grants is then tested, not the meter's
caution. After the processes gave back their leases, the account's usage must
equal the units served.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from django.test.utils import override_settings

from quotas.backends import get_backend
from quotas.codec import windows_at
from quotas.contract import LEASE_MARGIN, Charge, Subject
from quotas.decision import Decision
from quotas.exceptions import LimitExceeded
from quotas.leases import Lease, LeaseBook
from quotas.meter import Meter, RequestMeter
from quotas.policy import parse_quotas, parse_rates, window_at
from quotas.records import KeyRecord
from quotas.redis_backend import RedisBackend
from tests.quotas.reference import gcra_refusals, quota_excess
from tests.quotas.test_meter import record

PROCESSES = 4
SECONDS = 1.2


@dataclass(frozen=True)
class Trial:
    name: str
    rates: str
    quotas: str
    keys: int = 1
    # Seconds into the trial at which UTC midnight falls (None: not in it).
    midnight_at: float | None = None
    modes: tuple[str, ...] = ("leases", "mixed", "greedy", "no-leases")


TRIALS = [
    Trial("rate-bound", "5000/s", ""),
    Trial("tight", "10/s", "", keys=3, modes=("greedy",)),
    Trial("quota-bound, two keys", "100000/s", "6000/day", keys=2),
    Trial("two rates", "4000/s, 9000/m", "1000000/day"),
    Trial("midnight", "100000/s", "2500/day, 100000/month", keys=2, midnight_at=0.5),
]


def _offset(trial: Trial) -> float:
    if trial.midnight_at is None:
        return 0.0
    midnight = datetime.fromtimestamp(time.time() + 86400, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp() - time.time() - trial.midnight_at


def _records(trial: Trial, account_id: int) -> list[KeyRecord]:
    keys = range(account_id * 10, account_id * 10 + trial.keys)
    return [record(get_backend(), trial.rates, trial.quotas, account_id=account_id, key_id=key) for key in keys]


class _Greedy(LeaseBook):
    """Asks for a lease of random size and life on every charge it may."""

    def __init__(self, give_back: Callable[[Lease], None], rng: random.Random) -> None:
        super().__init__(give_back)
        self.rng = rng

    def charge_for(self, subject: Subject, requests: int, units: int, now_ms: int) -> Charge:
        plain = super().charge_for(subject, requests, units, now_ms)
        if requests != 1:
            return plain
        size = self.rng.choice([1, 2, 3, 5, 9, 20, 100, 256])
        expires = now_ms + self.rng.randint(20, 250)
        for window in windows_at(subject, now_ms):
            expires = min(expires, window.end_ms)
        return Charge(requests, units, size, size * self.rng.choice([0, 1, 2]), expires, plain.give_back)


class _Counting(RedisBackend):
    """The Redis backend, counting the requests it admitted (give-backs aside).
    In greedy mode its lease margin is 0: leases are granted up to the limits,
    where only the placement of leases and the give-back rule keep them exact."""

    admitted = 0

    def charge(self, subject: Subject, charge: Charge, now_ms: int) -> Decision:
        decision = super().charge(subject, charge, now_ms)
        self.admitted += charge.requests > 0 and decision.allowed
        return decision


class _Worker:
    """One process's traffic; ``served`` is (key id, served ms, units)."""

    def __init__(self, meter: Meter, records: list[KeyRecord], rng: random.Random) -> None:
        self.meter, self.records, self.rng = meter, records, rng
        self.served: list[tuple[int, int, int]] = []

    def one(self, record: KeyRecord) -> bool:
        request = RequestMeter(self.meter, record)
        units = self.rng.choice([1, 1, 1, 1, 0, 3])
        try:
            request.charge(units=units)
        except LimitExceeded:
            return False
        self.served.append((record.key_id, request.served_ms, units))
        return True

    def steady(self) -> None:
        """As fast as it can, on random keys, with the odd short pause."""
        self.one(self.rng.choice(self.records))
        if self.rng.random() < 0.02:
            time.sleep(self.rng.random() * 0.003)  # vary each key's pace

    def hold(self) -> None:
        """Take a lease, wait, then serve what is left of it at once: leased
        requests served as late as their lease allows."""
        record = self.rng.choice(self.records)
        self.one(record)
        lease = self.meter.leases._leases.get(record.key_id)
        if lease is None:
            time.sleep(self.rng.random() * 0.02)
            return
        time.sleep(self.rng.random() * max(lease.deadline - time.monotonic(), 0))
        while (
            self.meter.leases._leases.get(record.key_id) is lease
            and lease.requests
            and time.monotonic() < lease.deadline
        ):
            self.one(record)

    def burst(self) -> None:
        """A pause, then a burst on one key (no leases)."""
        time.sleep(self.rng.random() * 0.25)
        record = self.rng.choice(self.records)
        for _ in range(self.rng.randint(5, 30)):
            self.one(record)


def _work(
    trial: Trial, records: list[KeyRecord], offset: float, seed: int, mode: str, index: int, out: multiprocessing.Queue
) -> None:
    """One process: traffic until the trial ends; reports what it served and
    how many of those a lease served. In greedy mode two processes hold
    leases and two burst."""
    rng = random.Random(seed)
    greedy = mode == "greedy"
    backend = _Counting(lease_margin=0 if greedy else LEASE_MARGIN)
    meter = Meter(backend=lambda: backend, clock=lambda: time.time() + offset)
    worker = _Worker(meter, records, rng)
    step = worker.steady
    if greedy:
        meter.leases = _Greedy(meter._give_back, rng)
        step = worker.hold if index < 2 else worker.burst
    # "mixed": half the processes lease, as during a change of the setting.
    leases = mode == "leases" or (mode == "greedy" and index < 2) or (mode == "mixed" and index % 2 == 1)
    with override_settings(RATELIMIT_LEASES=leases):
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            step()
        leased = len(worker.served) - backend.admitted
        meter.leases.flush()
    out.put((worker.served, leased))


def _run(trial: Trial, account_id: int, mode: str) -> tuple[list[tuple[int, int, int]], int, float]:
    records = _records(trial, account_id)
    offset = _offset(trial)
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = context.Queue()
    processes = [
        context.Process(target=_work, args=(trial, records, offset, 1000 * account_id + n, mode, n, out))
        for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(10)
        assert process.exitcode == 0
    served = [row for rows, _ in results for row in rows]
    return served, sum(leased for _, leased in results), offset


CASES = [(trial, mode) for trial in TRIALS for mode in trial.modes]


@pytest.mark.parametrize(("trial", "mode"), CASES, ids=[f"{trial.name}-{mode}" for trial, mode in CASES])
def test_no_request_is_admitted_that_exact_counting_would_refuse(trial: Trial, mode: str) -> None:
    account_id = 100 + CASES.index((trial, mode))
    served, leased, offset = _run(trial, account_id, mode)
    assert served, "nothing was served"
    for key_id in {key for key, _, _ in served}:
        times = [at for key, at, _ in served if key == key_id]
        for rate in parse_rates(trial.rates):
            assert gcra_refusals(times, rate.count, rate.period_ms) == 0, (key_id, str(rate))
    for quota in parse_quotas(trial.quotas):
        spent = [(at, units) for _, at, units in served]
        assert quota_excess(spent, quota.count, lambda at, q=quota: window_at(q.window, at).id) == 0, str(quota)
    # Leases were given back: the counters hold exactly what was served.
    backend = get_backend()
    for window in {"day", "month"} & {quota.window for quota in parse_quotas(trial.quotas)}:
        current = window_at(window, round((time.time() + offset) * 1000))
        expected = sum(units for _, at, units in served if current.start_ms <= at < current.end_ms)
        used = backend.usage([account_id], now=time.time() + offset)[account_id][window]
        assert used == expected, window
    # Far from the limits (at first), leases served requests; without, none.
    assert (leased > 0) if mode != "no-leases" else (leased == 0), (leased, len(served))
    print(f"{trial.name}, {mode}: {len(served)} served, {leased} from leases")
