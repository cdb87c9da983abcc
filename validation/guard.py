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
- :meth:`Guard.judge` (jobs): each record gets ``seconds``
  (``validation.pipeline``): a record past it is stopped, reported as
  ``validation_timeout``, and the job goes on after it. ``tick`` is called at
  least every ``pipeline.TICK_SECONDS`` while waiting, so a job can write its progress
  and notice that it was cancelled, even inside one long record.

The child (``validation.child``) is a fork, replaced at once when killed, and
recompiles schemas as it needs them, from the sources the parent compiled
(``CompiledSchema.source``). With ``seconds`` 0 nothing is guarded:
:class:`InlineGuard` runs the same :class:`~validation.evaluator.Evaluator` in
this process (benchmarks only; one hostile schema then holds a worker).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from validation.child import GRACE_SECONDS, Child, Crashed, Failed, Timeout
from validation.engine import CompiledSchema
from validation.evaluator import LIST, Entry, Evaluator, Result, UnknownSchema
from validation.parsing import RawBatch
from validation.pipeline import Outcome, Pipeline, TooManyStopped

__all__ = ["Crashed", "Failed", "Guard", "InlineGuard", "Outcome", "Timeout", "TooManyStopped", "for_this_thread"]


class InlineGuard:
    """No guard: the evaluator in this process (``seconds`` 0)."""

    def __init__(self) -> None:
        self._evaluator = Evaluator()

    def check(
        self,
        compiled: CompiledSchema,
        instances: Sequence[Any],
        *,
        seconds: float,
        response_bytes: int,
        output: str = LIST,
    ) -> list[Result]:
        self._evaluator.put(compiled.key, compiled)
        return self._evaluator.check(compiled.key, instances, response_bytes, output)

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
        output: str = LIST,
    ) -> Iterator[tuple[RawBatch, Outcome]]:
        self._evaluator.put(compiled.key, compiled)
        for raw in batches:
            outcome = Outcome()
            rest = self._evaluator.records(compiled.key, fmt, raw, limit, _collector(outcome), output)
            outcome.entries.extend(rest)
            yield raw, outcome

    def close(self) -> None:
        return None


class Guard:
    """Validation in a kept child process, stopped at its deadlines. Not
    thread-safe: one per thread (:func:`for_this_thread`)."""

    def __init__(self) -> None:
        self.child = Child()

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def close(self) -> None:
        self.child.close()

    def check(
        self,
        compiled: CompiledSchema,
        instances: Sequence[Any],
        *,
        seconds: float,
        response_bytes: int,
        output: str = LIST,
    ) -> list[Result]:
        """``(valid, errors, truncated)`` per instance within ``seconds`` in
        all (``errors``: the ``output`` structure, see Evaluator.check).
        Raises Timeout, Crashed, Failed."""
        for _ in range(2):
            deadline = self.child.ensure(compiled, seconds)
            self.child.send("check", compiled.key, list(instances), response_bytes, output, seconds + GRACE_SECONDS)
            reply = self.child.reply(deadline)
            if reply[0] == "checked":
                return [(bool(valid), errors, bool(truncated)) for valid, errors, truncated in reply[1]]
            self.child.loaded.discard(compiled.key)  # evicted meanwhile: load it again
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
        output: str = LIST,
    ) -> Iterator[tuple[RawBatch, Outcome]]:
        """Judge the records of ``batches``, each within ``seconds``; yields
        every batch with its :class:`Outcome`, in order. Two batches are in
        the pipe at a time, so that reading and splitting the next overlaps
        validating this one. ``tick`` is called while waiting (what it raises
        stops the child and propagates). Raises TooManyStopped once more than
        ``may_stop`` records were stopped, and Failed."""
        run = Pipeline(self.child, compiled, fmt, iter(batches), seconds, limit, output)
        try:
            yield from run.results(tick, may_stop)
        except BaseException:
            self.child.stop()  # it may be busy with a batch nobody waits for
            raise


def _collector(outcome: Outcome) -> Callable[[list[Entry], int], None]:
    def collect(entries: list[Entry], done: int) -> None:
        outcome.entries.extend(entries)

    return collect


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
