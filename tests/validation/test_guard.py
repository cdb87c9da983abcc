"""The guard's child process in this process's hands: deadlines, stopping one
record and going on, a child killed from outside, a fresh child after each
stop, and the same answers as without a guard."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test.utils import override_settings

from tests.validation.hostile import alive, fanout_chain
from validation.engine import CompiledSchema, compile_schema
from validation.guard import Crashed, Guard, InlineGuard, Timeout, TooManyStopped
from validation.readers import RawBatch


def compiled(schema: Any) -> CompiledSchema:
    with override_settings(VALIDATION_SCHEMA_COST_LIMIT=10**12):  # the guard alone, whatever the schema
        return compile_schema(schema, resolve=lambda uri: None)


SLOW = fanout_chain(20)  # a string passes at once; the errors of a number take minutes
ORDER = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}


@pytest.fixture
def guard() -> Iterator[Guard]:
    checker = Guard()
    yield checker
    checker.close()


def lines(*values: bytes) -> RawBatch:
    return RawBatch(list(range(1, len(values) + 1)), list(values))


def noop() -> None:
    return None


def test_a_check_past_its_budget_is_stopped_and_the_next_one_answers(guard: Guard) -> None:
    assert guard.check(compiled(ORDER), [{"id": 1}], seconds=2, response_bytes=10_000) == [(True, [], False)]
    first = guard.pid
    started = time.monotonic()
    with pytest.raises(Timeout):
        guard.check(compiled(SLOW), [1], seconds=0.5, response_bytes=10_000)
    assert 0.5 <= time.monotonic() - started < 3
    assert first is not None and not alive(first)  # killed, not left running
    results = guard.check(compiled(ORDER), [{"id": 1}, {"id": "x"}], seconds=5, response_bytes=10_000)
    assert [valid for valid, _, _ in results] == [True, False]
    assert guard.pid != first


def test_a_child_killed_from_outside_is_a_crash_and_replaced(guard: Guard) -> None:
    guard.check(compiled(ORDER), [{"id": 1}], seconds=2, response_bytes=10_000)
    victim = guard.pid
    assert victim is not None
    threading.Timer(0.3, lambda: os.kill(victim, signal.SIGKILL)).start()
    with pytest.raises(Crashed):
        guard.check(compiled(SLOW), [1], seconds=30, response_bytes=10_000)
    assert guard.check(compiled(ORDER), [{"id": "x"}], seconds=5, response_bytes=10_000)[0][0] is False


def test_a_record_past_its_budget_is_reported_and_the_batch_goes_on(guard: Guard) -> None:
    ticks: list[float] = []
    started = time.monotonic()
    outcome = guard.records(
        compiled(SLOW),
        "ndjson",
        lines(b'"a"', b"1", b'"b"', b"not json", b"2", b'"c"'),
        seconds=0.5,
        limit=64,
        tick=lambda: ticks.append(time.monotonic()),
        may_stop=5,
    )
    assert time.monotonic() - started < 2 * 0.5 + 6
    assert outcome.stopped == [2, 5]
    assert [(number, errors[0].get("code")) for number, errors, _ in outcome.entries] == [
        (2, "validation_timeout"),
        (4, "invalid_json"),
        (5, "validation_timeout"),
    ]
    assert "longer than 0.5 s" in outcome.entries[0][1][0]["message"]
    assert len(ticks) >= 4  # called while each long record ran


def test_past_the_allowance_the_batch_stops(guard: Guard) -> None:
    with pytest.raises(TooManyStopped):
        guard.records(compiled(SLOW), "ndjson", lines(*[b"1"] * 10), seconds=0.3, limit=64, tick=noop, may_stop=1)


def test_what_tick_raises_stops_the_child_and_propagates(guard: Guard) -> None:
    class Cancelled(Exception):
        pass

    def cancel() -> None:
        raise Cancelled()

    with pytest.raises(Cancelled):
        guard.records(compiled(SLOW), "ndjson", lines(b"1"), seconds=60, limit=64, tick=cancel, may_stop=5)
    assert guard.pid is None or guard.pid > 0  # a successor is warming up
    outcome = guard.records(compiled(ORDER), "ndjson", lines(b'{"id": 1}'), seconds=5, limit=64, tick=noop, may_stop=0)
    assert outcome.entries == []


def test_the_guard_answers_what_the_engine_answers_without_it(guard: Guard) -> None:
    schema = compiled({"type": "array", "items": {"type": "integer", "maximum": 3}, "maxItems": 4})
    instances: list[Any] = [[1, 2], [1, 5, "x"], list(range(10)), "nope", [2**70]]
    inline = InlineGuard()
    assert guard.check(schema, instances, seconds=5, response_bytes=10**6) == inline.check(
        schema, instances, seconds=0, response_bytes=10**6
    )
    records = RawBatch([1, 2, 4, 5], [b"[1, 2]", b"[9]", b"[[[[1]]]]", b"{"])
    kept = guard.records(schema, "ndjson", records, seconds=5, limit=3, tick=noop, may_stop=0)
    alone = inline.records(schema, "ndjson", records, seconds=0, limit=3, tick=noop, may_stop=0)
    assert kept.entries == alone.entries
    assert [(number, errors[0].get("code")) for number, errors, _ in kept.entries] == [
        (2, None),
        (4, "too_deep"),
        (5, "invalid_json"),
    ]


def test_the_answer_of_a_check_has_a_byte_budget(guard: Guard) -> None:
    schema = compiled({"items": {"const": "k" * 300}})
    results = guard.check(schema, [["z"] * 150] * 5, seconds=10, response_bytes=50_000)
    sizes = [len(errors) for _, errors, _ in results]
    assert sizes[0] == 100 and sum(sizes) < 200 and sizes[-1] == 0
    assert all(truncated for _, _, truncated in results)
