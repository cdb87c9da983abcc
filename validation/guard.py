"""The time budget of every validation: the engine runs in a child process
that is killed at its deadline.

jsonschema-rs holds the GIL while it validates: no Python signal handler or
watchdog thread of the process that called it can run until it returns, and
a crafted schema or instance can keep it busy for minutes. So the engine runs
in a kept child process (a fork running ``validation.evaluator.serve``), one
per thread that validates (a gunicorn worker, a job's work horse), and the
caller waits with a deadline:

- :meth:`Guard.check` (synchronous requests): the whole request's instances
  get ``seconds``; past that the child is killed and :class:`Timeout` raised.
- :meth:`Guard.records` (jobs): each record gets ``seconds``. The child counts
  finished records in shared memory; a record that runs past its budget is
  stopped (the child killed and started again), reported as
  ``validation_timeout``, and the batch goes on after it. ``tick`` is called
  at least every ``TICK_SECONDS`` while waiting, so a job can write its
  progress and notice that it was cancelled, even inside one long record.

A killed child is replaced at once by a new fork (milliseconds) and
recompiles schemas as it needs them, from the sources the parent compiled
(``CompiledSchema.source``). With ``seconds`` 0 nothing is
guarded: :class:`InlineGuard` runs the same :class:`~validation.evaluator.Evaluator`
in this process (benchmarks only; one hostile schema then holds a worker).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from validation import channel
from validation.engine import CompiledSchema, record_error
from validation.evaluator import Entry, Evaluator, Progress, Result, UnknownSchema, serve
from validation.parsing import RawBatch

log = logging.getLogger("tollgate.validation.guard")

# How often a waiting guard looks at the child's progress and calls ``tick``.
TICK_SECONDS = 0.1
# The child's own alarm, past the parent's deadline, for when the parent is gone.
_GRACE_SECONDS = 5.0
# How long a new child may take to say it is ready: not part of any budget,
# as it is not the input's doing.
STARTUP_SECONDS = 30.0


class Timeout(Exception):
    """The validation ran past its budget; the child was stopped."""


class Crashed(Exception):
    """The child ended without answering (killed from outside, out of memory)."""


class Failed(Exception):
    """The child raised: a bug, with its traceback."""


class TooManyStopped(Exception):
    """More records were stopped than the caller allows; the rest of the
    batch was not judged."""


@dataclass
class Outcome:
    """A batch of records, judged: every invalid record's ``(number, errors,
    truncated)`` in number order (stopped records among them, as
    ``validation_timeout`` or ``validation_crashed``)."""

    entries: list[Entry] = field(default_factory=list)


def _stopped_error(code: str, seconds: float) -> dict[str, Any]:
    if code == "validation_timeout":
        return record_error(code, f"Validating this record took longer than {seconds:g} s; it was stopped.")
    return record_error(code, "The validator stopped while validating this record; it was not validated.")


class InlineGuard:
    """No guard: the evaluator in this process (``seconds`` 0)."""

    def __init__(self) -> None:
        self._evaluator = Evaluator()

    def check(
        self, compiled: CompiledSchema, instances: Sequence[Any], *, seconds: float, response_bytes: int
    ) -> list[Result]:
        self._evaluator.put(compiled.key, compiled)
        return self._evaluator.check(compiled.key, instances, response_bytes)

    def judge(
        self,
        compiled: CompiledSchema,
        fmt: str,
        batches: Iterable[RawBatch],
        *,
        seconds: float,
        limit: int,
        tick: Callable[[], None],
        may_stop: int,
    ) -> Iterator[tuple[RawBatch, Outcome]]:
        self._evaluator.put(compiled.key, compiled)
        for raw in batches:
            outcome = Outcome()
            rest = self._evaluator.records(compiled.key, fmt, raw, limit, _collector(outcome))
            outcome.entries.extend(rest)
            yield raw, outcome

    def close(self) -> None:
        return None


class Guard:
    """A kept child process that validates, stopped at its deadlines. Not
    thread-safe: one per thread (:func:`for_this_thread`).

    The child is a fork of this process (everything it needs is imported
    already: it starts in milliseconds, which is what makes stopping a
    record and going on cheap); it runs ``validation.evaluator.serve`` and
    nothing else, and never returns into this process's code."""

    def __init__(self) -> None:
        self._owner = os.getpid()
        self._pid: int | None = None
        self._requests = self._replies_fd = -1
        self._progress = Progress()
        self._loaded: set[str] = set()
        self._replies = channel.Replies()
        self._outbox = bytearray()
        self._ready = False

    # -- the child -------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._pid

    def _alive(self) -> bool:
        if self._pid is None:
            return False
        try:
            return os.waitpid(self._pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def _spawn(self) -> int:
        if self._owner != os.getpid():  # this process is a fork: that child is its parent's
            self._forget()
            self._owner = os.getpid()
        if self._pid is not None and self._alive():
            return self._pid
        self._forget()
        requests_out, requests_in = os.pipe()
        replies_out, replies_in = os.pipe()
        shared = mmap.mmap(-1, 8)  # anonymous and shared: this process and the child
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: serve() ends the process, whatever happens
            os.close(requests_in)
            os.close(replies_out)
            serve(requests_out, replies_in, shared, parent)
        os.close(requests_out)
        os.close(replies_in)
        os.set_blocking(requests_in, False)  # requests are written as the child takes them
        self._pid, self._requests, self._replies_fd = pid, requests_in, replies_out
        self._outbox = bytearray()
        self._progress = Progress(shared)
        self._loaded.clear()
        self._ready = False
        self._replies = channel.Replies()
        return pid

    def _forget(self) -> None:
        """Drop the child's pipes (a killed child's, or a parent process's)."""
        for fd in (self._requests, self._replies_fd):
            if fd >= 0:
                os.close(fd)
        self._requests = self._replies_fd = -1
        self._pid = None

    def _kill(self) -> None:
        if self._pid is not None and self._owner == os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
        self._forget()

    def _stop(self) -> None:
        """Kill the child now and fork its successor."""
        self._kill()
        self._spawn()

    def close(self) -> None:
        self._kill()

    # -- messages -------------------------------------------------------------
    def _send(self, *message: Any) -> None:
        """Queue a request; :meth:`_next` writes it as the pipe takes it (a
        job's next batch waits there while the child works on the last)."""
        self._spawn()
        self._outbox += channel.request(message)

    def _next(self, timeout: float) -> list[Any] | None:
        """The next reply, or None if none came within ``timeout``; queued
        requests are written meanwhile. Raises Crashed when the child ends."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._replies.pop()
            if message is not None:
                if message[0] == "failed":
                    raise Failed(message[1])
                return message
            writing = [self._requests] if self._outbox else []
            readable, writable, _ = select.select(
                [self._replies_fd], writing, [], max(0.0, deadline - time.monotonic())
            )
            if writable:
                try:
                    del self._outbox[: os.write(self._requests, self._outbox)]
                except BlockingIOError:
                    pass
                except OSError:  # BrokenPipeError: it died
                    raise Crashed() from None
            if readable:
                data = os.read(self._replies_fd, 1 << 20)
                if not data:
                    raise Crashed()
                self._replies.feed(data)
            elif not writable:
                return None

    def _reply(self, deadline: float) -> list[Any]:
        """The next reply before ``deadline``; else the child is stopped."""
        try:
            message = self._next(deadline - time.monotonic())
        except Crashed:
            self._stop()
            raise
        if message is None:
            self._stop()
            raise Timeout()
        return message

    def _start(self) -> None:
        """A child that has started and said so (its start is no budget's)."""
        self._spawn()
        if not self._ready:
            self._reply(time.monotonic() + STARTUP_SECONDS)  # ["ready"]
            self._ready = True

    def _ensure(self, compiled: CompiledSchema, seconds: float) -> float:
        """The schema loaded in a started child; returns the deadline of
        ``seconds`` from there (loading counts against it)."""
        self._start()
        deadline = time.monotonic() + seconds
        if compiled.key not in self._loaded:
            self._send("load", compiled.key, compiled.source.as_tuple(), seconds + _GRACE_SECONDS)
            self._reply(deadline)
            self._loaded.add(compiled.key)
        return deadline

    # -- validation -------------------------------------------------------------
    def check(
        self, compiled: CompiledSchema, instances: Sequence[Any], *, seconds: float, response_bytes: int
    ) -> list[Result]:
        """``(valid, errors, truncated)`` per instance within ``seconds`` in
        all. Raises Timeout, Crashed, Failed."""
        for _ in range(2):
            deadline = self._ensure(compiled, seconds)
            self._send("check", compiled.key, list(instances), response_bytes, seconds + _GRACE_SECONDS)
            reply = self._reply(deadline)
            if reply[0] == "checked":
                return [(bool(valid), errors, bool(truncated)) for valid, errors, truncated in reply[1]]
            self._loaded.discard(compiled.key)  # evicted meanwhile: load it again
        raise UnknownSchema(compiled.key)

    def judge(
        self,
        compiled: CompiledSchema,
        fmt: str,
        batches: Iterable[RawBatch],
        *,
        seconds: float,
        limit: int,
        tick: Callable[[], None],
        may_stop: int,
    ) -> Iterator[tuple[RawBatch, Outcome]]:
        """Judge the records of ``batches``, each within ``seconds``; yields
        every batch with its :class:`Outcome`, in order. Two batches are in
        the pipe at a time, so that reading and splitting the next overlaps
        validating this one. ``tick`` is called while waiting (what it raises
        stops the child and propagates). Raises TooManyStopped once more than
        ``may_stop`` records were stopped, and Failed."""
        run = _Run(self, compiled, fmt, iter(batches), seconds, limit)
        try:
            yield from run.results(tick, may_stop)
        except BaseException:
            self._stop()  # it may be busy with a batch nobody waits for
            raise


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


class _Run:
    """One :meth:`Guard.judge`: batches in flight, and what is left to send."""

    DEPTH = 2

    def __init__(
        self, guard: Guard, compiled: CompiledSchema, fmt: str, source: Iterator[RawBatch], seconds: float, limit: int
    ) -> None:
        self.guard, self.compiled, self.fmt, self.source = guard, compiled, fmt, source
        self.seconds, self.limit = seconds, limit
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
        guard = self.guard
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
            if self.compiled.key not in guard._loaded or guard._pid is None:
                if self.flights:
                    self.backlog.appendleft((origin, raw))  # load once the pipe is empty
                    return
                guard._ensure(self.compiled, self.seconds)
                self.sent = guard._progress.value
            hard = self.seconds * len(raw) + _GRACE_SECONDS
            guard._send(
                "records", self.compiled.key, self.fmt, raw.numbers, raw.items, raw.errors, raw.header, self.limit, hard
            )
            self.flights.append(_Flight(origin, raw, self.sent))
            self.sent += len(raw)

    def _outcome(self, origin: int) -> Outcome:
        return self.batches[origin - self.yielded][1]

    def results(self, tick: Callable[[], None], may_stop: int) -> Iterator[tuple[RawBatch, Outcome]]:
        guard = self.guard
        seen, since = guard._progress.value, time.monotonic()
        while True:
            idle = not self.flights
            self._fill()
            if idle and self.flights:  # the child starts on them now (perhaps a new child, just ready)
                seen, since = guard._progress.value, time.monotonic()
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
                message = guard._next(TICK_SECONDS)
            except Crashed:
                self._stopped("validation_crashed")
                seen, since = guard._progress.value, time.monotonic()
                continue
            if message is None:
                now = time.monotonic()
                if guard._progress.value != seen:
                    seen, since = guard._progress.value, now
                elif now - since > self.seconds:
                    self._stopped("validation_timeout")
                    seen, since = guard._progress.value, time.monotonic()
                    if self.stopped > may_stop:
                        raise TooManyStopped()
                tick()
                continue
            flight = self.flights[0]
            if message[0] == "entries":
                self._outcome(flight.origin).entries.extend(_entries(message[2]))
                flight.covered = message[1]
            elif message[0] == "done":
                self._outcome(flight.origin).entries.extend(_entries(message[1]))
                self.flights.popleft()
                self.open[flight.origin] -= 1
                seen, since = guard._progress.value, time.monotonic()
            else:
                raise Failed(f"unexpected answer to a batch: {message[0]!r}")
            if self.stopped > may_stop:
                raise TooManyStopped()

    def _stopped(self, code: str) -> None:
        """The record running now was stopped: take what the child sent
        before, report that record, and send again what is left: the records
        after it, those done since the child last sent errors, and the
        batches behind it."""
        guard = self.guard
        if guard._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(guard._pid, signal.SIGKILL)
        with contextlib.suppress(Crashed):
            while self.flights and (message := guard._next(1.0)) is not None:
                flight = self.flights[0]
                if message[0] == "entries":
                    self._outcome(flight.origin).entries.extend(_entries(message[2]))
                    flight.covered = message[1]
                elif message[0] == "done":
                    self._outcome(flight.origin).entries.extend(_entries(message[1]))
                    self.flights.popleft()
                    self.open[flight.origin] -= 1
        finished = guard._progress.value
        guard._stop()
        again: list[tuple[int, RawBatch]] = []
        blamed = False
        for flight in self.flights:
            order = flight.order()
            done = min(max(finished - flight.first, 0), len(order))
            numbers = set(order[flight.covered : done]) if not blamed else set()
            if not blamed and done < len(order):
                number = order[done]
                log.warning("Record %s stopped (%s)", number, code)
                self._outcome(flight.origin).entries.append((number, [_stopped_error(code, self.seconds)], False))
                self.stopped += 1
                blamed = True
                numbers |= set(order[done + 1 :])
            elif blamed:
                numbers = set(order)
            again.append((flight.origin, _only(flight.raw, numbers)))
        self.flights.clear()
        self.backlog.extendleft(reversed(again))


def _collector(outcome: Outcome) -> Callable[[list[Entry], int], None]:
    def collect(entries: list[Entry], done: int) -> None:
        outcome.entries.extend(entries)

    return collect


def _entries(raw: list[Any]) -> list[Entry]:
    return [(number, errors, truncated) for number, errors, truncated in raw]


def _only(raw: RawBatch, numbers: set[int]) -> RawBatch:
    """The records of ``raw`` whose numbers are in ``numbers``."""
    kept = [(n, item) for n, item in zip(raw.numbers, raw.items, strict=True) if n in numbers]
    errors = [(n, error) for n, error in raw.errors if n in numbers]
    return RawBatch([n for n, _ in kept], [item for _, item in kept], errors, raw.header)


_threads = threading.local()


def for_this_thread(seconds: float) -> Guard | InlineGuard:
    """This thread's guard (and child), created on first use; for a budget
    of 0 seconds, no guard."""
    if seconds <= 0:
        inline = getattr(_threads, "inline", None)
        if inline is None:
            inline = _threads.inline = InlineGuard()
        return inline
    guard = getattr(_threads, "guard", None)
    if guard is None:
        guard = _threads.guard = Guard()
    return guard
