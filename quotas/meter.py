"""The meter: who is calling, and charging them.

One :class:`Meter` per process (:func:`process_meter`) holds the process's
key records (``quotas.authentication``), its Redis-down rule
(``quotas.outage``) and its leases (``quotas.leases``, unless
``RATELIMIT_LEASES`` is off). Each metered request gets a
:class:`RequestMeter` (``request.meter``): the middleware charges plain
endpoints through it, and the validation views charge the number of records.
Tests build their own ``Meter`` with their own parts.
"""

from __future__ import annotations

import atexit
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

from project.errors import ServiceUnavailable
from project.metrics import recorder
from quotas.authentication import KeyRecords
from quotas.backends import get_backend
from quotas.contract import ONE, PEEK, Backend, Charge, StaleGeneration
from quotas.decision import Decision
from quotas.exceptions import InvalidApiKey, LimitExceeded
from quotas.leases import Lease, LeaseBook
from quotas.outage import REDIS_DOWN, Outage
from quotas.records import KeyRecord

log = logging.getLogger("tollgate.quotas")

# A charge that finds the account changed reloads the record and tries again;
# an account changing faster than this (a script saving it in a loop) gets a
# 503 for that request alone, never the breaker every other account shares.
STALE_ATTEMPTS = 3


class Meter:
    """Authentication and charging for one process."""

    def __init__(
        self,
        *,
        records: KeyRecords | None = None,
        outage: Outage | None = None,
        backend: Callable[[], Backend] = get_backend,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.records = records or KeyRecords(backend=backend)
        self.outage = outage or Outage()
        self.clock = clock
        self.leases = LeaseBook(self._give_back, monotonic=monotonic)
        self.leasing = bool(getattr(settings, "RATELIMIT_LEASES", True))
        setting_changed.connect(self._setting_changed, weak=True)

    def _setting_changed(self, setting: str, **kwargs: Any) -> None:
        if setting == "RATELIMIT_LEASES":
            self.leasing = bool(getattr(settings, "RATELIMIT_LEASES", True))

    def authenticate(self, raw: str) -> KeyRecord:
        """The record of a usable key (see ``KeyRecords.authenticate``); with
        Redis down, RATELIMIT_FAIL_MODE decides: LimiterUnavailable (closed),
        or a record read from the database alone (open)."""
        try:
            return self.records.authenticate(raw)
        except REDIS_DOWN as exc:
            self.outage.failed(exc)
            self.outage.fail_mode()
            return self.records.authenticate(raw, generation="")

    def charge(self, meter: RequestMeter, requests: int, units: int) -> Decision | None:
        """Charge ``requests`` and ``units`` for ``meter``'s key, from a lease
        when one can pay, else in one round trip. Returns the decision (None:
        Redis is down and the fail mode is open). Raises InvalidApiKey (the key
        changed and is no longer usable), LimiterUnavailable (503, fail mode
        closed), ServiceUnavailable (the database did not answer, or the
        account kept changing)."""
        now_ms = int(self.clock() * 1000)
        meter.served_ms = now_ms
        record = meter.record
        leasing = requests == 1 and self.leasing
        if leasing:
            decision = self.leases.serve(record.subject, units, now_ms)
            if decision is not None:
                return decision
        if self.outage.is_open:
            self.outage.fail_mode()
            return None
        try:
            for attempt in range(STALE_ATTEMPTS):
                if leasing and attempt == 0:
                    charge = self.leases.charge_for(record.subject, requests, units, now_ms)
                else:
                    charge = ONE if requests == 1 and units == 1 else Charge(requests, units)
                try:
                    started = time.perf_counter()
                    decision = self.backend().charge(record.subject, charge, now_ms)
                    if recorder.on:
                        recorder.limiter_round_trip(time.perf_counter() - started)
                except StaleGeneration:
                    fresh = self.records.reload(record.prefix)
                    if fresh is None:
                        raise InvalidApiKey() from None
                    record = meter.record = fresh
                    continue
                if charge is not ONE and (charge.lease_requests or charge.lease_units):
                    self.leases.granted(charge, decision)
                return decision
        except REDIS_DOWN as exc:
            self.outage.failed(exc)
            self.outage.fail_mode()
            return None
        log.warning("Account %s kept changing while key %s was charged", record.account_id, record.prefix)
        raise ServiceUnavailable("The account is being changed; retry shortly.")

    def forget(self, account_ids: set[int] | None = None) -> None:
        """After a change to keys, accounts or plans: drop every cached record
        and the leases of these accounts (all: None)."""
        self.records.forget()
        self.leases.drop(account_ids)

    def _give_back(self, lease: Lease) -> None:
        """Send an ended lease's give-back on its own (the leases' background
        thread): a peek that gives back. Failures are logged, never raised:
        units not given back stay counted as used."""
        give_back = lease.give_back()
        if give_back is None or self.outage.is_open:
            return
        charge = Charge(PEEK.requests, PEEK.units, give_back=give_back)
        try:
            self.backend().charge(lease.subject, charge, int(self.clock() * 1000))
        except StaleGeneration:
            pass  # the account changed: the give-back no longer applies
        except REDIS_DOWN as exc:
            log.warning("Could not give back an unused lease of key %s: %s", lease.subject.key_id, type(exc).__name__)


class RequestMeter:
    """The metering of one request, attached to it as ``request.meter``."""

    __slots__ = ("charged", "decision", "meter", "record", "served_ms")

    def __init__(self, meter: Meter, record: KeyRecord) -> None:
        self.meter = meter
        self.record = record
        self.decision: Decision | None = None
        self.charged = False
        self.served_ms = 0

    def charge(self, *, requests: int = 1, units: int = 1) -> Decision | None:
        """Charge ``requests`` against the key's rate limits and ``units``
        against the account's quotas, all or nothing.

        Returns the decision (None if Redis is unreachable and the fail mode is
        open). Raises LimitExceeded (429), InvalidApiKey (the key changed and is
        no longer usable), LimiterUnavailable (503, fail mode closed),
        ServiceUnavailable (503).
        """
        self.charged = True
        decision = self.decision = self.meter.charge(self, requests, units)
        if decision is not None and not decision.allowed:
            state = decision.violated or decision.states[0]
            raise LimitExceeded.of(decision, state, decision.retry_after)
        return decision


@functools.cache
def process_meter() -> Meter:
    """This process's meter, built on first use (in a gunicorn worker: after
    the fork)."""
    return Meter()


@atexit.register
def _give_back_at_exit() -> None:
    # A worker stopping gives back what its leases did not use.
    if process_meter.cache_info().currsize:
        process_meter().leases.flush()
