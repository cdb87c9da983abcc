"""Leases: a process serves a busy key's requests from requests and units it
reserved in the same round trip as one charge, and gives back what it did not
use. Far from every limit most requests of a hot key then touch Redis not at
all; near a limit every request is charged on its own, exactly as without
leases. ``RATELIMIT_LEASES=false`` turns them off.

How a lease works
-----------------
When a key's charge goes to Redis, the process may ask for ``k`` more
requests and ``u`` more units, to be served locally until an expiry ``e``
(at most ``LEASE_SECONDS`` away, and never past the end of a quota window).
``k`` follows the key's rate in this process: what it served since its
previous round trip, over the time since, times ``TARGET_SECONDS``, at most
doubling from one lease to the next, and only after ``WARM_STREAK`` round
trips in a row less than a second apart; a key seen once a minute gets
``k = 0``, so leasing never costs a round trip of its own. charge.lua grants the lease
only if every rate limit keeps at least ``LEASE_MARGIN`` times the requests
the call reserves (``k`` and its own) and every quota ``LEASE_MARGIN`` times
its units, afterwards; otherwise it charges the request alone (so a limit
under 128 never leases). A lease ends when it is used up, expires, meets a
request it cannot pay for, or the key record changes; what is left is given
back in the next charge of the key, or by a background thread
``GIVE_BACK_GRACE`` after the expiry if no charge comes.

Why no request is ever admitted that exact GCRA and exact counting would refuse
------------------------------------------------------------------------------
Quotas. A lease's units are added to the window's count when it is granted;
they are served before ``e``, which is inside that window. So the count of a
window is never less than the units served in it. A give-back subtracts only
from the lease's own window (charge.lua compares the window id) and only
while the account's generation is the lease's (a hash lost and rebuilt, even
with a new count in the same window, has a new random generation), so it
removes units that were counted and never served.

Rate limits (count ``n`` per period ``p``, emission interval ``T = p/n``,
tolerance ``tau = p - T``). Every admitted charge takes ``c`` consecutive
slots of length ``T`` starting at ``max(TAT, x)`` (``x`` = now) and passes
only if its last slot starts at most ``tau`` after now. A request served at
time ``s`` in a slot ``sigma`` with ``sigma - tau <= s <= sigma``, slots never
overlapping, makes a conforming sequence: the ``m`` requests served within
``[t1, t2]`` then hold ``m`` disjoint slots inside ``[t1, t2 + tau]``, so
``(m - 1) T <= t2 - t1 + tau``, which is GCRA's condition for every pair.
(1) A lease is charged with ``x = e``: its slots all start after its expiry,
so each of its requests, served between now and ``e``, is served no later
than its slot; and the script's check (last slot within ``tau`` of *now*)
gives the other bound. Its slots are the latest of the bucket, so the bucket
cannot refill under a live lease (the TAT is after ``e``), and no burst of
other processes can add to leased requests beyond the limit. The price: until
``e`` the lease also holds ``(e - now) / T`` requests of time, which is why
leases need a wide margin and last at most 0.25 s. (2) A give-back
subtracts ``g T`` from the TAT. Let ``H`` be the history of every admitted
charge with each lease's cost reduced to what it served; its TAT is never
above the stored one, and while that holds every charge Redis admits is one
``H`` admits, so by (1) every served request conforms. Subtracting ``g T``
keeps it if no charge since the lease's op came within ``g T`` of a clamp of
``H``'s TAT to ``x``: charge.lua keeps per rate limit a *run* (a new one at
every clamp, and the first lease) and a *budget*, the least slack
``TAT - x`` of any charge of the run minus every give-back since. A give-back
needs its lease's run id and ``ceil(g T) <= budget``, and lowers the budget;
by induction over charges and give-backs the stored TAT stays at or above
``H``'s. A charge from anything that does not keep the bookkeeping (an older
script) voids it: the bookkeeping records the TAT it was written with.

What this costs
---------------
Under-admission is bounded: a request is refused only if exact GCRA and
counting would refuse it with every request and unit held by other
processes' live leases counted as used, a rate lease holding its ``k``
requests plus its remaining time to ``e`` (never more than 0.25 s of the
limit, and granted only with ``LEASE_MARGIN`` times its size left), plus
unused requests of ended leases not given back yet (at most
``GIVE_BACK_GRACE`` after their expiry) or whose give-back the budget
refused (they come back as the bucket refills). Leased units count as used
in the usage counters and the operations page until given back. A request
served from a lease carries the headers of the charge that granted it, at
most ``LEASE_SECONDS`` old; every charged request, so every 429 and every
request near a limit, carries exact ones. A revoked key or a changed plan
takes effect within ``LEASE_SECONDS``: no lease outlives its expiry, and the
next charge of the key finds the new generation.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from quotas.codec import windows_at
from quotas.contract import ONE, Charge, GiveBack, Subject
from quotas.decision import Decision

log = logging.getLogger("tollgate.quotas")

# The longest a lease lives: the bound on how stale its headers are and on
# how long a revoked key or a changed plan may still be served.
LEASE_SECONDS = 0.25
# A lease is sized to last about this long at the key's rate in this process.
TARGET_SECONDS = 0.2
# The most requests one lease holds; past this, round trips are already rare.
MAX_LEASE = 256
# How long after its expiry an unused lease waits for the key's next charge
# to carry its give-back before the background thread sends it alone.
GIVE_BACK_GRACE = 0.25
# A lease shorter than this (a quota window about to end) is not worth it.
MIN_LEASE_MS = 10
# A key leases only after this many round trips in a row, each within a
# second of the one before: a few quick requests are not a busy key.
WARM_STREAK = 8


@dataclass(slots=True, eq=False)
class Lease:
    """Requests and units reserved for this process, served until
    ``expires_ms`` (epoch) and ``deadline`` (monotonic), whichever is first,
    with the headers of ``decision``."""

    subject: Subject
    requests: int
    units: int
    taken_ms: int
    expires_ms: int
    deadline: float
    decision: Decision
    runs: tuple[int, ...]
    windows: tuple[int, ...]
    # Ended and accounted for: its give-back was carried by a charge, sent,
    # or dropped with its generation.
    settled: bool = False

    def give_back(self) -> GiveBack | None:
        if not (self.requests or self.units):
            return None
        return GiveBack(self.requests, self.units, self.taken_ms, self.runs, self.windows)


@dataclass(slots=True)
class _Pace:
    """What this process served of one key since its last round trip, and
    how many round trips in a row came less than a second apart."""

    since_ms: int = 0
    requests: int = 0
    units: int = 0
    size: int = 0
    streak: int = 0


@dataclass(order=True)
class _Due:
    at: float
    order: int
    lease: Lease = field(compare=False)


_books: weakref.WeakSet[LeaseBook] = weakref.WeakSet()


class LeaseBook:
    """The leases of one process: at most one per key.

    ``give_back(lease)`` sends a lease's give-back on its own (the background
    thread and ``flush`` call it; it must not raise)."""

    def __init__(
        self,
        give_back: Callable[[Lease], None],
        *,
        seconds: float = LEASE_SECONDS,
        grace: float = GIVE_BACK_GRACE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._give_back = give_back
        self.seconds = seconds
        self.grace = grace
        self.monotonic = monotonic
        self._reset()
        _books.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._pace: dict[int, _Pace] = {}
        self._due: list[_Due] = []
        self._order = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def serve(self, subject: Subject, units: int, now_ms: int) -> Decision | None:
        """One request of ``units`` units, served at ``now_ms`` from the key's
        live lease if it can pay for it; returns the lease's decision, else
        None."""
        with self._lock:
            lease = self._leases.get(subject.key_id)
            if lease is None or lease.subject is not subject or lease.requests < 1 or lease.units < units:
                return None
            if now_ms >= lease.expires_ms or self.monotonic() >= lease.deadline:
                return None
            lease.requests -= 1
            lease.units -= units
            pace = self._pace[subject.key_id]
            pace.requests += 1
            pace.units += units
            return lease.decision

    def charge_for(self, subject: Subject, requests: int, units: int, now_ms: int) -> Charge:
        """The charge to send for a request the lease could not serve: it
        ends the key's lease (carrying its give-back) and may ask for a new
        one. Only single requests lease."""
        with self._lock:
            ended = self._leases.pop(subject.key_id, None)
            pace = self._pace.get(subject.key_id)
            if pace is None:  # first seen: no rate yet, no lease
                pace = self._pace[subject.key_id] = _Pace(since_ms=now_ms - 60_000)
            pace.requests += requests
            pace.units += units
            extra, extra_units, expires = 0, 0, 0
            elapsed = max(now_ms - pace.since_ms, 1)
            pace.streak = pace.streak + 1 if elapsed < 1000 else 0
            if requests == 1 and pace.streak >= WARM_STREAK:
                rate = pace.requests * 1000 / elapsed  # per second
                size = min(int(rate * TARGET_SECONDS), 2 * pace.size + 2, MAX_LEASE)
                pace.size = size if size >= 2 else 0
                if pace.size:
                    last = min((w.end_ms for w in windows_at(subject, now_ms)), default=1 << 62)
                    span = min(self.seconds, 2 * size / rate) * 1000
                    expires = min(now_ms + int(span), last)
                    if expires - now_ms >= MIN_LEASE_MS:
                        extra = size - 1
                        extra_units = -(-extra * pace.units // pace.requests)
            pace.since_ms, pace.requests, pace.units = now_ms, 0, 0
            if ended is not None:
                ended.settled = True
        give_back = None
        if ended is not None and ended.subject == subject:
            give_back = ended.give_back()
        if extra == 0 and give_back is None:
            return ONE if requests == 1 and units == 1 else Charge(requests, units)
        return Charge(requests, units, extra, extra_units if extra else 0, expires if extra else 0, give_back)

    def granted(self, charge: Charge, decision: Decision) -> None:
        """Keep the lease ``decision`` granted for ``charge`` (if it did)."""
        subject = decision.subject
        if not decision.leased:
            with self._lock:
                pace = self._pace.get(subject.key_id)
                if pace is not None and charge.leasing:
                    pace.size //= 2  # refused: near a limit, ask for less
            return
        now = self.monotonic()
        lease = Lease(
            subject=subject,
            requests=charge.lease_requests,
            units=charge.lease_units,
            taken_ms=decision.at_ms,
            expires_ms=charge.lease_expires_ms,
            deadline=now + (charge.lease_expires_ms - decision.at_ms) / 1000,
            decision=decision,
            runs=decision.reply.runs,
            windows=tuple(window.id for window in decision.windows),
        )
        with self._lock:
            replaced = self._leases.get(subject.key_id)
            self._leases[subject.key_id] = lease
        if replaced is not None:  # a concurrent charge of the same key got one too
            self._schedule(now, replaced)
        self._schedule(lease.deadline + self.grace, lease)

    def drop(self, account_ids: set[int] | None = None) -> None:
        """Forget the leases of these accounts (all: None) without giving them
        back: their generation is gone, so no give-back would be taken."""
        with self._lock:
            for key_id, lease in list(self._leases.items()):
                if account_ids is None or lease.subject.account_id in account_ids:
                    lease.settled = True
                    del self._leases[key_id]

    def flush(self) -> None:
        """Give back every lease now (at exit)."""
        with self._lock:
            leases, self._leases = list(self._leases.values()), {}
            for lease in leases:
                lease.settled = True
        for lease in leases:
            if lease.give_back() is not None:
                self._give_back(lease)

    def _schedule(self, at: float, lease: Lease) -> None:
        with self._wake:
            heapq.heappush(self._due, _Due(at, next(self._order), lease))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tollgate-give-back", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._due:
                    self._wake.wait(5.0)
                    if not self._due:
                        self._thread = None
                        return
                wait = self._due[0].at - self.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                due = heapq.heappop(self._due).lease
            with self._lock:
                if self._leases.get(due.subject.key_id) is due:
                    del self._leases[due.subject.key_id]
                if due.settled:
                    continue
                due.settled = True
            if due.give_back() is not None:
                self._give_back(due)


def _after_fork() -> None:
    # A child must not serve its parent's leases (both would serve them).
    for book in list(_books):
        book._reset()


os.register_at_fork(after_in_child=_after_fork)
