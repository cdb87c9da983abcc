"""What runs next to the engine: in the guard's child process, or inline.

An :class:`Evaluator` keeps compiled schemas by key and answers:

- ``load``: compile a schema from its :class:`~validation.engine.SchemaSource`;
- ``check``: parsed instances of a synchronous request, each with its errors,
  within one byte budget for the whole answer (``validation.bounds``);
- ``records``: one :class:`~validation.readers.RawBatch` of a job, parsed and
  validated record by record in number order. The errors of each invalid
  record go out (``emit``) as soon as it is done, then the shared progress
  counter moves on: the guard reads which record is running from it, and
  stops the child when one runs past its budget.

The child is ``python -m validation.evaluator <progress fd> <parent pid>``:
requests on stdin, replies on stdout (``validation.channel``). It never reads
Django settings or a database: every limit comes with the request. It dies
with its parent (Linux: ``PR_SET_PDEATHSIG``), and each request arms a
kernel alarm that ends it, GIL or not, if the parent never does.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
import sys
import traceback
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from validation import channel
from validation.bounds import MAX_ERRORS_PER_INSTANCE, RECORD_REPORT_BYTES, ErrorBudget
from validation.engine import CompiledSchema, SchemaSource, compile_source
from validation.readers import Converter, RawBatch, converters_for, parse_batch

Entry = tuple[int, list[dict[str, Any]], bool]
Result = tuple[bool, list[dict[str, Any]], bool]
CACHE_SIZE = 256
_PR_SET_PDEATHSIG = 1


class Progress:
    """Records finished, as one shared 64-bit counter (or a plain one inline)."""

    def __init__(self, buffer: Any = None) -> None:
        self._cells = memoryview(buffer).cast("q") if buffer is not None else [0]

    @property
    def value(self) -> int:
        return int(self._cells[0])

    @value.setter
    def value(self, number: int) -> None:
        self._cells[0] = number


class UnknownSchema(Exception):
    """The key was never loaded here, or was evicted."""


class Evaluator:
    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress or Progress()
        self._schemas: OrderedDict[str, CompiledSchema] = OrderedDict()
        self._converters: dict[tuple[str, tuple[str, ...]], list[Converter]] = {}

    def put(self, key: str, compiled: CompiledSchema) -> None:
        self._schemas[key] = compiled
        self._schemas.move_to_end(key)
        while len(self._schemas) > CACHE_SIZE:
            evicted, _ = self._schemas.popitem(last=False)
            self._converters = {k: v for k, v in self._converters.items() if k[0] != evicted}

    def load(self, key: str, source: tuple[Any, ...]) -> None:
        self.put(key, compile_source(SchemaSource(*source)))

    def _get(self, key: str) -> CompiledSchema:
        compiled = self._schemas.get(key)
        if compiled is None:
            raise UnknownSchema(key)
        self._schemas.move_to_end(key)
        return compiled

    def check(self, key: str, instances: Sequence[Any], response_bytes: int) -> list[Result]:
        """``(valid, errors, truncated)`` per instance; all errors together
        take at most ``response_bytes``."""
        compiled = self._get(key)
        budget = ErrorBudget(sys.maxsize, response_bytes)
        results: list[Result] = []
        for instance in instances:
            if compiled.is_valid(instance):
                results.append((True, [], False))
                continue
            errors, truncated = compiled.errors(instance)
            kept, cut = budget.take(errors)
            results.append((False, kept, truncated or cut))
        return results

    def records(self, key: str, fmt: str, raw: RawBatch, limit: int, emit: Callable[[Entry], None]) -> None:
        """Parse and validate ``raw`` in number order: ``emit`` each invalid
        record's ``(number, errors, truncated)``, then count it done."""
        compiled = self._get(key)
        converters = self._columns(key, compiled, raw.header) if fmt == "csv" else None
        batch = parse_batch(fmt, raw, limit=limit, converters=converters)
        is_valid = compiled.validator.is_valid
        progress = self.progress
        done = progress.value
        if not batch.errors:
            for number, value in zip(batch.numbers, batch.values, strict=True):
                if not is_valid(value):
                    emit(self._entry(compiled, number, value))
                done += 1
                progress.value = done
            return
        for number, value, error in batch.in_order():
            if error is not None:
                emit((number, [error], False))
            elif not is_valid(value):
                emit(self._entry(compiled, number, value))
            done += 1
            progress.value = done

    @staticmethod
    def _entry(compiled: CompiledSchema, number: int, value: Any) -> Entry:
        errors, truncated = compiled.errors(value)
        kept, cut = ErrorBudget(MAX_ERRORS_PER_INSTANCE, RECORD_REPORT_BYTES).take(errors)
        return number, kept, truncated or cut

    def _columns(self, key: str, compiled: CompiledSchema, header: list[str] | None) -> list[Converter]:
        names = tuple(header or ())
        converters = self._converters.get((key, names))
        if converters is None:
            converters = self._converters[(key, names)] = converters_for(compiled.source.document, list(names))
        return converters


# -- the child process ----------------------------------------------------------


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)  # the parent died before we could tie ourselves to it


def _serve(evaluator: Evaluator, message: tuple[Any, ...], out: int) -> list[Any]:
    kind, key = message[0], message[1]
    if kind == "load":
        evaluator.load(key, message[2])
        return ["loaded"]
    if kind == "check":
        return ["checked", evaluator.check(key, message[2], message[3])]
    fmt, numbers, items, errors, header, limit = message[2:8]
    raw = RawBatch(numbers, items, [tuple(error) for error in errors], header)  # type: ignore[misc]
    evaluator.records(key, fmt, raw, limit, lambda entry: channel.write_all(out, channel.reply(["entry", *entry])))
    return ["done"]


def main(argv: list[str]) -> int:
    progress_fd, parent = int(argv[1]), int(argv[2])
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process ends
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the alarm below ends it, whatever runs
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)  # settings must never be read here
    evaluator = Evaluator(Progress(mmap.mmap(progress_fd, 8)))
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    channel.write_all(stdout, channel.reply(["ready"]))
    while True:
        message = channel.read_request(stdin)
        if message is None:
            return 0
        signal.setitimer(signal.ITIMER_REAL, float(message[-1]))
        try:
            answer = _serve(evaluator, message[:-1], stdout)
        except UnknownSchema:
            answer = ["unknown"]
        except Exception:  # a bug here must reach the parent's log, and this process live on
            answer = ["failed", traceback.format_exc()[-4000:]]
        signal.setitimer(signal.ITIMER_REAL, 0)
        channel.write_all(stdout, channel.reply(answer))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
