"""What runs next to the engine: in the guard's child process, or inline.

An :class:`Evaluator` keeps compiled schemas by key and answers:

- ``load``: compile a schema from its :class:`~validation.engine.SchemaSource`;
- ``check``: parsed instances of a synchronous request, each with its errors,
  within one byte budget for the whole answer (``validation.bounds``);
- ``records``: one :class:`~validation.parsing.RawBatch` of a job, parsed and
  validated record by record in number order. After each record the shared
  progress counter moves on: the guard reads which record is running from it,
  and stops the child when one runs past its budget. The errors go out with
  the answer, and every ``FLUSH_SECONDS`` meanwhile with the count of records
  they cover, so a stopped child's work is lost only since then.

In the child, :func:`serve` reads requests and writes replies on two pipes
(``validation.channel``). It never reads Django settings or a database, and
never uses the connections it inherited: every limit comes with the request.
It dies with its parent (Linux: ``PR_SET_PDEATHSIG``), and each request arms a
kernel alarm that ends it, GIL or not, if the parent never does.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import mmap
import os
import signal
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any, NoReturn

from project import exactjson
from validation import channel
from validation.bounds import MAX_ERRORS_PER_INSTANCE, RECORD_REPORT_BYTES, ErrorBudget
from validation.engine import CompiledSchema, SchemaSource, compile_source
from validation.parsing import Converter, RawBatch, converters_for, json_record, parse_batch

Entry = tuple[int, list[dict[str, Any]], bool]
# (valid, errors or the output structure, truncated)
Result = tuple[bool, Any, bool]
CACHE_SIZE = 256
# Tollgate's own list of errors, the default answer of a check.
LIST = "list"
# How often a batch's errors so far are sent while it runs: what a stopped
# child's successor must do again is at most this much work.
FLUSH_SECONDS = 0.05
# The formats whose records are JSON texts, and what their messages call a record.
_JSON_LABELS = {"ndjson": "Line", "json": "Item"}
_PR_SET_PDEATHSIG = 1


class Progress:
    """Records finished, as one shared 64-bit counter (or a plain one inline)."""

    def __init__(self, buffer: Any = None) -> None:
        # ``cells[0] = n`` is how a loop moves it on: no call per record.
        self.cells: Any = memoryview(buffer).cast("q") if buffer is not None else [0]

    @property
    def value(self) -> int:
        return int(self.cells[0])

    @value.setter
    def value(self, number: int) -> None:
        self.cells[0] = number


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

    def check(self, key: str, instances: Sequence[Any], response_bytes: int, output: str = LIST) -> list[Result]:
        """``(valid, errors, truncated)`` per instance; all errors together
        take at most ``response_bytes``. With ``output`` one of the
        specification's formats (``validation.outputs``), ``errors`` is that
        structure instead, within the same budget."""
        compiled = self._get(key)
        if output != LIST:
            return self._outputs(compiled, instances, response_bytes, output)
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

    @staticmethod
    def _outputs(compiled: CompiledSchema, instances: Sequence[Any], room: int, output: str) -> list[Result]:
        results: list[Result] = []
        for instance in instances:
            structure = compiled.output(instance, output)
            size = len(exactjson.dumps(structure))
            truncated = False
            if size > room:
                structure, truncated = _cut(structure), True
                size = len(exactjson.dumps(structure))
            room = max(room - size, 0)
            results.append((bool(structure["valid"]), structure, truncated or bool(structure.get("truncated"))))
        return results

    def records(
        self,
        key: str,
        fmt: str,
        raw: RawBatch,
        limit: int,
        flush: Callable[[list[Entry], int], None],
        output: str = LIST,
    ) -> list[Entry]:
        """Parse and validate ``raw`` in number order, counting each record
        done as it is. Every invalid record's ``(number, errors, truncated)``
        is collected; at least every ``FLUSH_SECONDS`` the collection goes to
        ``flush`` with the number of this batch's records done so far, so
        that a stopped child loses only that little. Returns the rest.
        With ``output`` a specification format, an invalid record's errors
        are its one output structure (``validation.outputs``)."""
        compiled = self._get(key)
        if fmt in _JSON_LABELS and not raw.errors:
            risky, opens = raw.survey if raw.survey is not None else exactjson.survey(raw.items)
            if not risky and opens <= limit:
                return self._plain_records(compiled, raw, limit, _JSON_LABELS[fmt], flush, output)
        converters = self._columns(key, compiled, raw.header) if fmt == "csv" else None
        batch = parse_batch(fmt, raw, limit=limit, converters=converters)
        is_valid = compiled.validator.is_valid
        cells, clock = self.progress.cells, time.monotonic
        first = done = self.progress.value
        entries: list[Entry] = []
        flushed = clock()
        # Without record errors, the values in order as they are.
        rows = zip(batch.numbers, batch.values, repeat(None)) if not batch.errors else batch.in_order()
        for number, value, error in rows:
            if error is not None:
                entries.append((number, [error], False))
            elif not is_valid(value):
                entries.append(self._entry(compiled, number, value, output))
            done += 1
            cells[0] = done
            if entries and clock() - flushed > FLUSH_SECONDS:
                flush(entries, done - first)
                entries, flushed = [], clock()
        return entries

    def _plain_records(
        self,
        compiled: CompiledSchema,
        raw: RawBatch,
        limit: int,
        label: str,
        flush: Callable[[list[Entry], int], None],
        output: str,
    ) -> list[Entry]:
        """:meth:`records` for the common batch, JSON texts that
        ``exactjson.survey`` found neither risky nor deep: each record read
        (msgspec, no number hook) and validated in turn, so that it is still
        in the CPU's caches when the engine walks it and when it is freed
        (no batch of parsed values is ever held). A record msgspec refuses
        is read on its own (``parsing.json_record``)."""
        is_valid, decode, refused = compiled.validator.is_valid, exactjson.decode_plain, exactjson.DECODE_ERRORS
        cells, clock = self.progress.cells, time.monotonic
        first = done = self.progress.value
        entries: list[Entry] = []
        flushed = clock()
        for number, item in zip(raw.numbers, raw.items, strict=True):
            try:
                value, error = decode(item), None
            except refused:
                value, error = json_record(number, item, limit, label)
            if error is not None:
                entries.append((number, [error], False))
            elif not is_valid(value):
                entries.append(self._entry(compiled, number, value, output))
            done += 1
            cells[0] = done
            if entries and clock() - flushed > FLUSH_SECONDS:
                flush(entries, done - first)
                entries, flushed = [], clock()
        return entries

    @staticmethod
    def _entry(compiled: CompiledSchema, number: int, value: Any, output: str = LIST) -> Entry:
        if output != LIST:
            ((_, structure, truncated),) = Evaluator._outputs(compiled, [value], RECORD_REPORT_BYTES, output)
            return number, [structure], truncated
        errors, truncated = compiled.errors(value)
        kept, cut = ErrorBudget(MAX_ERRORS_PER_INSTANCE, RECORD_REPORT_BYTES).take(errors)
        return number, kept, truncated or cut

    def _columns(self, key: str, compiled: CompiledSchema, header: list[str] | None) -> list[Converter]:
        names = tuple(header or ())
        converters = self._converters.get((key, names))
        if converters is None:
            converters = self._converters[(key, names)] = converters_for(compiled.source.document, list(names))
        return converters


def _cut(structure: dict[str, Any]) -> dict[str, Any]:
    """An output structure past the answer's byte budget: its verdict only."""
    cut = {key: value for key, value in structure.items() if key not in ("errors", "error")}
    if not structure.get("valid", True):
        cut["error"] = "The errors were left out: the answer reached its byte budget."
    cut["truncated"] = True
    return cut


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
        return ["checked", evaluator.check(key, message[2], message[3], message[4])]
    fmt, numbers, items, errors, header, limit, output, survey = message[2:10]
    errors = [tuple(error) for error in errors]
    raw = RawBatch(numbers, items, errors, header, tuple(survey) if survey is not None else None)  # type: ignore[arg-type]

    def flush(entries: list[Entry], done: int) -> None:
        channel.write_all(out, channel.reply(["entries", done, entries]))

    return ["done", evaluator.records(key, fmt, raw, limit, flush, output)]


def _own_signals() -> None:
    """The parent's signal handlers (gunicorn's, rq's) are not this process's."""
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    for number in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError, TypeError):
            if callable(signal.getsignal(number)):
                signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process ends
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the alarm below ends it, whatever runs


def serve(requests: int, replies: int, progress: mmap.mmap, parent: int) -> NoReturn:
    """The child's life, in a fork of the guard's process: read requests,
    answer them, until the requests pipe closes; then end the process
    (``os._exit``: nothing of the parent's, no atexit, no buffers, runs)."""
    try:
        _die_with(parent)
        _own_signals()
        gc.freeze()  # the parent's objects: never walked here
        evaluator = Evaluator(Progress(progress))
        channel.write_all(replies, channel.reply(["ready"]))
        while True:
            message = channel.read_request(requests)
            if message is None:
                break
            signal.setitimer(signal.ITIMER_REAL, float(message[-1]))
            try:
                answer = _serve(evaluator, message[:-1], replies)
            except UnknownSchema:
                answer = ["unknown"]
            except Exception:  # a bug here must reach the parent's log, and this process live on
                answer = ["failed", traceback.format_exc()[-4000:]]
            signal.setitimer(signal.ITIMER_REAL, 0)
            channel.write_all(replies, channel.reply(answer))
    finally:
        os._exit(0)
