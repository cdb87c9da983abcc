"""What the service does when its database is down, hung or slow.

Three parts, each small:

- :class:`Outage` keeps the state of an outage for every process forked from
  one parent (gunicorn's workers, the RQ worker's work horses): its shared
  memory is made when this module is imported, which happens before those
  forks. It logs **one line when an outage starts** and one when it ends, however
  many requests fail in between, and it holds a **breaker**: after a
  connection failure no process tries the database again for
  ``BREAKER_SECONDS``; then one process probes while the others still answer
  at once, so a hung server costs one wait per probe, not one per request.
- :func:`database_unavailable` turns a database error into the API's 503
  ``service_unavailable`` (``Retry-After``), reporting it to the outage.
- :func:`use_timeouts` sets a process's connect and statement timeouts
  (``project.postgresql`` enforces them) before it opens a connection.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import time
from collections.abc import Callable

from django.db import connections

from project.errors import ServiceUnavailable
from project.metrics import count_database_error

log = logging.getLogger("tollgate.database")

# After a failed connection, every process answers without trying the
# database for this long; then one of them probes it again.
BREAKER_SECONDS = 2.0
# While one process probes, the others keep the breaker open for at most
# this long (a probe is bounded by its connect and statement timeouts; if the
# prober dies, the others take over after this).
PROBE_LEASE_SECONDS = 15.0
# An outage ends once the database answers again and nothing failed for this
# long: a database that is slow rather than down fails some queries and
# answers others, and that is one outage, not one per request.
QUIET_SECONDS = 5.0
# The shared state is updated under a lock; a process that cannot take it
# this fast skips the update rather than wait (a killed holder must not stop
# the others).
LOCK_WAIT = 0.05


CAUSE_BYTES = 200


class _State(ctypes.Structure):
    _fields_ = [
        ("started", ctypes.c_double),  # monotonic start of the outage, 0 when none
        ("last_failure", ctypes.c_double),
        ("closed_at", ctypes.c_double),  # the breaker lets attempts through from then on
        ("failures", ctypes.c_long),
        ("cause", ctypes.c_char * CAUSE_BYTES),  # why the breaker last opened
    ]


class Outage:
    """The database outage seen by this family of processes.

    ``clock`` is ``time.monotonic`` (system-wide, so comparable between
    processes); tests pass their own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._state = multiprocessing.RawValue(_State)
        self._lock = multiprocessing.Lock()

    @property
    def active(self) -> bool:
        return self._state.started > 0

    def reset(self) -> None:
        """Forget any outage (tests)."""
        ctypes.memset(ctypes.addressof(self._state), 0, ctypes.sizeof(_State))

    def allow(self) -> bool:
        """Whether this process may try to connect now: False while the
        breaker is open. When its time is up, the first caller gets True and
        holds it open for the others while it probes."""
        state = self._state
        now = self.clock()
        if state.closed_at == 0:
            return True
        if now < state.closed_at:
            return False
        if not self._lock.acquire(timeout=LOCK_WAIT):
            return True  # never let a stuck lock keep the database closed
        try:
            if now < state.closed_at:
                return False  # another process took the probe
            state.closed_at = now + PROBE_LEASE_SECONDS
            return True
        finally:
            self._lock.release()

    @property
    def cause(self) -> str:
        """Why the breaker last opened."""
        return self._state.cause.decode("utf-8", "replace")

    def trip(self, exc: BaseException) -> None:
        """A connection failed (refused, timed out, dropped): open the breaker."""
        cause = _one_line(exc).encode("utf-8", "replace")[: CAUSE_BYTES - 1]

        def update(state: _State, now: float) -> None:
            state.closed_at = now + BREAKER_SECONDS
            state.cause = cause

        self._update(update)

    def answered(self) -> None:
        """The database answered: close the breaker, and end the outage once
        nothing failed for ``QUIET_SECONDS``. Free when there is no outage."""
        state = self._state
        if state.started == 0 and state.closed_at == 0:
            return
        ended: list[tuple[float, int]] = []

        def update(state: _State, now: float) -> None:
            state.closed_at = 0
            if state.started and now - state.last_failure >= QUIET_SECONDS:
                ended.append((state.last_failure - state.started, state.failures))
                state.started, state.failures = 0, 0

        self._update(update)
        for seconds, failures in ended:
            log.info("Database answering again, after %s failed call(s) over %.1f s", failures, seconds)

    def failed(self, exc: BaseException) -> None:
        """An answer failed because of the database. The first failure of an
        outage (none for ``QUIET_SECONDS`` before it) logs one line."""
        started: list[bool] = []

        def update(state: _State, now: float) -> None:
            if not state.started or now - state.last_failure >= QUIET_SECONDS:
                state.started, state.failures = now, 0
                started.append(True)
            state.failures += 1
            state.last_failure = now

        self._update(update)
        if started:
            log.warning(
                "Database unavailable (%s); API answers are 503 service_unavailable until it is back", _one_line(exc)
            )

    def _update(self, change: Callable[[_State, float], None]) -> None:
        if not self._lock.acquire(timeout=LOCK_WAIT):
            return
        try:
            change(self._state, self.clock())
        finally:
            self._lock.release()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no message'}"


# One per family of processes (see the module docstring).
outage = Outage()


def database_unavailable(exc: BaseException) -> ServiceUnavailable:
    """The 503 for an answer the database could not give, reported to the
    outage (which logs once per outage, not once per answer)."""
    outage.failed(exc)
    count_database_error()
    return ServiceUnavailable("The database did not answer in time; retry shortly.", retry_after=2)


def use_timeouts(*, connect: float, statement: float) -> None:
    """Set this process's PostgreSQL timeouts, in seconds (0: none), for
    the connections it opens from now on; open ones are closed. Nothing to do
    on other databases."""
    for alias in connections:
        settings = connections.settings[alias]
        if settings["ENGINE"] != "project.postgresql":
            continue
        settings["OPTIONS"].update(connect_timeout=connect, statement_timeout=statement)
        connections[alias].close()
