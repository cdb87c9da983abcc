"""The time budget of every validation: the engine runs in a child process
that is killed at its deadline.

jsonschema-rs holds the GIL while it validates: no Python signal handler or
watchdog thread of the process that called it can run until it returns, and
a crafted schema or instance can keep it busy for minutes. So the engine runs
in a kept child (``validation.evaluator``), one per thread that validates (a
gunicorn worker, a job's work horse), and the caller waits with a deadline:

- :meth:`Guard.check` (synchronous requests): the whole request's instances
  get ``seconds``; past that the child is killed and :class:`Timeout` raised.
- :meth:`Guard.records` (jobs): each record gets ``seconds``. The child counts
  finished records in shared memory; a record that runs past its budget is
  stopped (the child killed and started again), reported as
  ``validation_timeout``, and the batch goes on after it. ``tick`` is called
  at least every ``TICK_SECONDS`` while waiting, so a job can write its
  progress and notice that it was cancelled, even inside one long record.

A killed child is replaced at once (its Python starts in about 0.1 s while the
answer goes out) and recompiles schemas as it needs them, from the sources
the parent compiled (``CompiledSchema.source``). With ``seconds`` 0 nothing is
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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from validation import channel
from validation.engine import CompiledSchema, record_error
from validation.evaluator import Entry, Evaluator, Progress, Result, UnknownSchema
from validation.readers import RawBatch

log = logging.getLogger("tollgate.validation.guard")

ROOT = Path(__file__).resolve().parent.parent
# How often a waiting guard looks at the child's progress and calls ``tick``.
TICK_SECONDS = 0.1
# The child's own alarm, past the parent's deadline, for when the parent is gone.
_GRACE_SECONDS = 5.0
# How long a new child may take to start (Python and the engine): not part of
# any budget, as it is not the input's doing.
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
    truncated)`` in number order, and the records that were stopped
    (``validation_timeout``, ``validation_crashed``) among them."""

    entries: list[Entry] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)


def _stopped_error(code: str, seconds: float) -> dict[str, Any]:
    if code == "validation_timeout":
        return record_error(code, f"Validating this record took longer than {seconds:g} s; it was stopped.")
    return record_error(code, "The validator stopped while validating this record; it was not validated.")


def _after(raw: RawBatch, number: int) -> RawBatch:
    """The records of ``raw`` numbered above ``number``."""
    kept = [(n, item) for n, item in zip(raw.numbers, raw.items, strict=True) if n > number]
    errors = [(n, error) for n, error in raw.errors if n > number]
    return RawBatch([n for n, _ in kept], [item for _, item in kept], errors, raw.header)


class InlineGuard:
    """No guard: the evaluator in this process (``seconds`` 0)."""

    def __init__(self) -> None:
        self._evaluator = Evaluator()

    def check(
        self, compiled: CompiledSchema, instances: Sequence[Any], *, seconds: float, response_bytes: int
    ) -> list[Result]:
        self._evaluator.put(compiled.key, compiled)
        return self._evaluator.check(compiled.key, instances, response_bytes)

    def records(
        self,
        compiled: CompiledSchema,
        fmt: str,
        raw: RawBatch,
        *,
        seconds: float,
        limit: int,
        tick: Callable[[], None],
        may_stop: int,
    ) -> Outcome:
        self._evaluator.put(compiled.key, compiled)
        outcome = Outcome()
        self._evaluator.records(compiled.key, fmt, raw, limit, outcome.entries.append)
        return outcome

    def close(self) -> None:
        return None


class Guard:
    """A kept child process that validates, stopped at its deadlines. Not
    thread-safe: one per thread (:func:`for_this_thread`)."""

    def __init__(self) -> None:
        self._owner = os.getpid()
        self._process: subprocess.Popen[bytes] | None = None
        self._loaded: set[str] = set()
        self._replies = channel.Replies()
        self._file = tempfile.TemporaryFile()
        self._file.write(b"\0" * 8)
        self._file.flush()
        self._progress = Progress(mmap.mmap(self._file.fileno(), 8))
        self._started = 0  # the counter's value when the current batch was sent
        self._ready = False

    # -- the child -------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _spawn(self) -> subprocess.Popen[bytes]:
        if self._owner != os.getpid():  # forked: that child belongs to the parent process
            self._process, self._owner = None, os.getpid()
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._progress.value = 0
        self._loaded.clear()
        self._ready = False
        self._replies = channel.Replies()
        fd = self._file.fileno()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "validation.evaluator", str(fd), str(os.getpid())],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(fd,),
        )
        return self._process

    def _stop(self) -> None:
        """Kill the child now and start its successor (which warms up meanwhile)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
        if process is not None:
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
        self._spawn()

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None and self._owner == os.getpid():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
        self._file.close()

    # -- messages -------------------------------------------------------------
    def _send(self, *message: Any) -> None:
        process = self._spawn()
        try:
            channel.write_all(process.stdin.fileno(), channel.request(message))  # type: ignore[union-attr]
        except OSError:  # BrokenPipeError: it died
            self._stop()
            raise Crashed() from None

    def _next(self, timeout: float) -> list[Any] | None:
        """The next reply, or None if none came within ``timeout``. Raises
        Crashed when the child ends."""
        while True:
            message = self._replies.pop()
            if message is not None:
                if message[0] == "failed":
                    raise Failed(message[1])
                return message
            process = self._process
            assert process is not None and process.stdout is not None  # noqa: S101 (sent to it just now)
            fd = process.stdout.fileno()
            ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
            if not ready:
                return None
            data = os.read(fd, 1 << 20)
            if not data:
                raise Crashed()
            self._replies.feed(data)
            timeout = 0.0

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

    def records(
        self,
        compiled: CompiledSchema,
        fmt: str,
        raw: RawBatch,
        *,
        seconds: float,
        limit: int,
        tick: Callable[[], None],
        may_stop: int,
    ) -> Outcome:
        """Judge the records of ``raw``, each within ``seconds``. ``tick`` is
        called while waiting (what it raises stops the child and propagates).
        Raises TooManyStopped once more than ``may_stop`` records were
        stopped, and Failed."""
        outcome = Outcome()
        pending: RawBatch | None = raw
        while pending is not None and len(pending):
            try:
                pending = self._batch(compiled, fmt, pending, seconds, limit, tick, outcome)
            except BaseException:
                if self._process is not None and self._process.poll() is None:
                    self._stop()
                raise
            if len(outcome.stopped) > may_stop:
                raise TooManyStopped()
        return outcome

    def _batch(
        self,
        compiled: CompiledSchema,
        fmt: str,
        raw: RawBatch,
        seconds: float,
        limit: int,
        tick: Callable[[], None],
        outcome: Outcome,
    ) -> RawBatch | None:
        """Send one batch and collect its entries; the rest of it after a
        stopped record, or None when it is done."""
        self._ensure(compiled, seconds)
        self._started = started = self._progress.value
        hard = seconds * len(raw) + _GRACE_SECONDS
        self._send("records", compiled.key, fmt, raw.numbers, raw.items, raw.errors, raw.header, limit, hard)
        seen, since = started, time.monotonic()
        while True:
            try:
                message = self._next(TICK_SECONDS)
            except Crashed:
                return self._stopped(raw, outcome, "validation_crashed", seconds)
            if message is None:
                now = time.monotonic()
                if self._progress.value != seen:
                    seen, since = self._progress.value, now
                elif now - since > seconds:
                    return self._stopped(raw, outcome, "validation_timeout", seconds)
                tick()
                continue
            if message[0] == "entry":
                outcome.entries.append((message[1], message[2], message[3]))
            elif message[0] == "done":
                return None
            else:  # unknown: evicted, load it again and resend
                self._loaded.discard(compiled.key)
                return raw

    def _stopped(self, raw: RawBatch, outcome: Outcome, code: str, seconds: float) -> RawBatch:
        """The record running now was stopped: drain what the child wrote
        before, report that record, and return the records after it."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
        with contextlib.suppress(Crashed):
            while (message := self._next(1.0)) is not None:
                if message[0] == "entry":
                    outcome.entries.append((message[1], message[2], message[3]))
        order = sorted([*raw.numbers, *(number for number, _ in raw.errors)])
        index = self._progress.value - self._started
        self._stop()
        if index >= len(order):  # every record was done; only the last word was lost
            return RawBatch()
        number = order[index]
        if outcome.entries and outcome.entries[-1][0] == number:  # it was done, all but counting
            return _after(raw, number)
        log.warning("Record %s stopped (%s) after %s records of its batch", number, code, index)
        outcome.entries.append((number, [_stopped_error(code, seconds)], False))
        outcome.stopped.append(number)
        return _after(raw, number)


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
