"""A job's batches through the guard's child (``validation.child``), each
record within its budget.

Two batches are in the pipe at a time: the work horse reads and splits the
next while the child parses and validates this one. The child counts the
records it finished in shared memory; a record past its budget is stopped
(the child killed, a new one forked), reported as ``validation_timeout``
(``validation_crashed`` when the child died by itself), and the rest is sent
again: the records after it, those the child finished since it last sent
errors (at most ``FLUSH_SECONDS`` of work) and the batch behind it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from validation.child import GRACE_SECONDS, Child, Crashed, Failed
from validation.engine import CompiledSchema, record_error
from validation.evaluator import Entry
from validation.parsing import RawBatch

log = logging.getLogger("tollgate.validation.guard")

# How often a waiting pipeline looks at the child's progress and calls ``tick``.
TICK_SECONDS = 0.1


class TooManyStopped(Exception):
    """More records were stopped than the job allows; the rest was not judged."""


@dataclass
class Outcome:
    """A batch of records, judged: every invalid record's ``(number, errors,
    truncated)`` in number order (stopped records among them, as
    ``validation_timeout`` or ``validation_crashed``)."""

    entries: list[Entry] = field(default_factory=list)


def stopped_error(code: str, seconds: float) -> dict[str, Any]:
    if code == "validation_timeout":
        return record_error(code, f"Validating this record took longer than {seconds:g} s; it was stopped.")
    return record_error(code, "The validator stopped while validating this record; it was not validated.")


@dataclass
class _Flight:
    """Records sent to the child in one request, for the batch ``origin``:
    ``first`` is the child's count of finished records when it starts on
    them, ``covered`` how many of them the errors received so far cover."""

    origin: int
    raw: RawBatch
    first: int
    covered: int = 0

    def order(self) -> list[int]:
        return sorted([*self.raw.numbers, *(number for number, _ in self.raw.errors)])


class Pipeline:
    """The batches of one job through a child: :meth:`results` yields each
    with its :class:`Outcome`, in order."""

    DEPTH = 2

    def __init__(
        self,
        child: Child,
        compiled: CompiledSchema,
        fmt: str,
        source: Iterator[RawBatch],
        seconds: float,
        limit: int,
        output: str = "list",
    ) -> None:
        self.child, self.compiled, self.fmt, self.source = child, compiled, fmt, source
        self.seconds, self.limit, self.output = seconds, limit, output
        self.flights: deque[_Flight] = deque()
        self.backlog: deque[tuple[int, RawBatch]] = deque()  # records to send again, before new batches
        self.batches: deque[tuple[RawBatch, Outcome]] = deque()  # every batch not yielded yet, in order
        self.open: dict[int, int] = {}  # flights and backlog entries per batch
        self.sent = 0  # records sent to the current child
        self.stopped = 0
        self.exhausted = False
        self.yielded = 0  # batches yielded so far: the origin of batches[0]

    def _fill(self) -> None:
        """Keep DEPTH requests in the pipe."""
        child = self.child
        while len(self.flights) < self.DEPTH:
            if self.backlog:
                origin, raw = self.backlog.popleft()
            elif not self.exhausted:
                nxt = next(self.source, None)
                if nxt is None:
                    self.exhausted = True
                    continue
                origin = len(self.batches) + self.yielded
                self.batches.append((nxt, Outcome()))
                self.open[origin] = 1
                raw = nxt
            else:
                return
            if not len(raw):
                self.open[origin] -= 1
                continue
            if self.compiled.key not in child.loaded or child.pid is None:
                if self.flights:
                    self.backlog.appendleft((origin, raw))  # load once the pipe is empty
                    return
                child.ensure(self.compiled, self.seconds)
                self.sent = child.progress.value
            hard = self.seconds * len(raw) + GRACE_SECONDS
            child.send(
                "records",
                self.compiled.key,
                self.fmt,
                raw.numbers,
                raw.items,
                raw.errors,
                raw.header,
                self.limit,
                self.output,
                raw.survey,
                hard,
            )
            self.flights.append(_Flight(origin, raw, self.sent))
            self.sent += len(raw)

    def _outcome(self, origin: int) -> Outcome:
        return self.batches[origin - self.yielded][1]

    def results(self, tick: Callable[[], None], may_stop: int) -> Iterator[tuple[RawBatch, Outcome]]:
        child = self.child
        seen, since = child.progress.value, time.monotonic()
        while True:
            idle = not self.flights
            self._fill()
            if idle and self.flights:  # the child starts on them now (perhaps a new child, just ready)
                seen, since = child.progress.value, time.monotonic()
            while self.batches and self.open[self.yielded] == 0:
                raw, outcome = self.batches.popleft()
                del self.open[self.yielded]
                self.yielded += 1
                outcome.entries.sort(key=lambda entry: entry[0])  # records done again after a stop come later
                yield raw, outcome
            if not self.flights:
                if self.exhausted and not self.backlog and not self.batches:
                    return
                continue
            try:
                message = child.next(TICK_SECONDS)
            except Crashed:
                self._stopped("validation_crashed")
                seen, since = child.progress.value, time.monotonic()
                continue
            if message is None:
                now = time.monotonic()
                if child.progress.value != seen:
                    seen, since = child.progress.value, now
                elif now - since > self.seconds:
                    self._stopped("validation_timeout")
                    seen, since = child.progress.value, time.monotonic()
                    if self.stopped > may_stop:
                        raise TooManyStopped()
                tick()
                continue
            if self._take(message):
                seen, since = child.progress.value, time.monotonic()
            if self.stopped > may_stop:
                raise TooManyStopped()

    def _take(self, message: list[Any]) -> bool:
        """File a reply under the oldest batch in flight; whether it ended it."""
        flight = self.flights[0]
        if message[0] == "entries":
            self._outcome(flight.origin).entries.extend(_entries(message[2]))
            flight.covered = message[1]
            return False
        if message[0] != "done":
            raise Failed(f"unexpected answer to a batch: {message[0]!r}")
        self._outcome(flight.origin).entries.extend(_entries(message[1]))
        self.flights.popleft()
        self.open[flight.origin] -= 1
        return True

    def _stopped(self, code: str) -> None:
        """The record running now was stopped: take what the child sent
        before, report that record, and send again what is left: the records
        after it, those done since the child last sent errors, and the
        batches behind it."""
        child = self.child
        child.signal_now()
        with contextlib.suppress(Crashed):
            while self.flights and (message := child.next(1.0)) is not None:
                self._take(message)
        finished = child.progress.value
        child.stop()
        again: list[tuple[int, RawBatch]] = []
        blamed = False
        for flight in self.flights:
            order = flight.order()
            done = min(max(finished - flight.first, 0), len(order))
            numbers = set(order[flight.covered : done]) if not blamed else set()
            if not blamed and done < len(order):
                number = order[done]
                log.warning("Record %s stopped (%s)", number, code)
                self._outcome(flight.origin).entries.append((number, [stopped_error(code, self.seconds)], False))
                self.stopped += 1
                blamed = True
                numbers |= set(order[done + 1 :])
            elif blamed:
                numbers = set(order)
            again.append((flight.origin, _only(flight.raw, numbers)))
        self.flights.clear()
        self.backlog.extendleft(reversed(again))


def _entries(raw: list[Any]) -> list[Entry]:
    return [(number, errors, truncated) for number, errors, truncated in raw]


def _only(raw: RawBatch, numbers: set[int]) -> RawBatch:
    """The records of ``raw`` whose numbers are in ``numbers``."""
    kept = [(n, item) for n, item in zip(raw.numbers, raw.items, strict=True) if n in numbers]
    errors = [(n, error) for n, error in raw.errors if n in numbers]
    # The survey of all of them holds for these (a superset's).
    return RawBatch([n for n, _ in kept], [item for _, item in kept], errors, raw.header, raw.survey)
