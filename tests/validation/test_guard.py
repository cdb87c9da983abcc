"""The guard's child process in this process's hands: deadlines, stopping one
record and going on, a child killed from outside, a fresh child after each
stop, and the same answers as without a guard."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test.utils import override_settings

from tests.validation.hostile import alive, fanout_chain
from validation.child import PIPE_BYTES
from validation.engine import CompiledSchema, compile_schema
from validation.evaluator import Evaluator
from validation.guard import Crashed, Guard, InlineGuard, Timeout, TooManyStopped
from validation.parsing import RawBatch


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


def judge(guard: Guard | InlineGuard, schema: Any, *batches: RawBatch, **options: Any) -> list[Any]:
    settings = {"seconds": 5.0, "limit": 64, "tick": noop, "may_stop": 5, **options}
    return [outcome.entries for _, outcome in guard.judge(compiled(schema), "ndjson", batches, **settings)]


def codes(entries: list[Any]) -> list[tuple[int, Any]]:
    return [(number, errors[0].get("code")) for number, errors, _ in entries]


def test_a_record_past_its_budget_is_reported_and_the_batch_goes_on(guard: Guard) -> None:
    ticks: list[float] = []
    started = time.monotonic()
    [entries] = judge(
        guard,
        SLOW,
        lines(b'"a"', b"1", b'"b"', b"not json", b"2", b'"c"'),
        seconds=0.5,
        tick=lambda: ticks.append(time.monotonic()),
    )
    assert time.monotonic() - started < 2 * 0.5 + 6
    assert codes(entries) == [(2, "validation_timeout"), (4, "invalid_json"), (5, "validation_timeout")]
    assert "longer than 0.5 s" in entries[0][1][0]["message"]
    assert len(ticks) >= 4  # called while each long record ran


def test_batches_in_flight_behind_a_stopped_record_are_judged_again_in_order(guard: Guard) -> None:
    def batch(first: int, *values: bytes) -> RawBatch:
        return RawBatch(list(range(first, first + len(values))), list(values))

    outcomes = judge(
        guard,
        SLOW,
        batch(1, b'"a"', b"1.5", b'"b"'),
        batch(4, b"2", b'"c"'),
        batch(6, b'"d"', b"{", b"3"),
        batch(9, b'"e"'),
        seconds=0.4,
    )
    assert [codes(entries) for entries in outcomes] == [
        [(2, "validation_timeout")],
        [(4, "validation_timeout")],
        [(7, "invalid_json"), (8, "validation_timeout")],
        [],
    ]


def test_past_the_allowance_the_job_stops(guard: Guard) -> None:
    with pytest.raises(TooManyStopped):
        judge(guard, SLOW, lines(*[b"1"] * 10), seconds=0.3, may_stop=1)


def test_what_tick_raises_stops_the_child_and_propagates(guard: Guard) -> None:
    class Cancelled(Exception):
        pass

    def cancel() -> None:
        raise Cancelled()

    busy = guard.pid
    with pytest.raises(Cancelled):
        judge(guard, SLOW, lines(b"1"), seconds=60, tick=cancel)
    assert busy is None or not alive(busy)
    assert judge(guard, ORDER, lines(b'{"id": 1}'), may_stop=0) == [[]]


def test_the_guard_answers_what_the_engine_answers_without_it(guard: Guard) -> None:
    schema = compiled({"type": "array", "items": {"type": "integer", "maximum": 3}, "maxItems": 4})
    instances: list[Any] = [[1, 2], [1, 5, "x"], list(range(10)), "nope", [2**70]]
    inline = InlineGuard()
    assert guard.check(schema, instances, seconds=5, response_bytes=10**6) == inline.check(
        schema, instances, seconds=0, response_bytes=10**6
    )
    records = RawBatch([1, 2, 4, 5], [b"[1, 2]", b"[9]", b"[[[[1]]]]", b"{"])
    document = schema.source.document
    kept = judge(guard, document, records, limit=3)
    assert kept == judge(inline, document, records, limit=3)
    assert codes(kept[0]) == [(2, None), (4, "too_deep"), (5, "invalid_json")]


def test_records_read_one_at_a_time_answer_as_a_batch_read_whole(guard: Guard) -> None:
    # Neither risky nor deep: read record by record (evaluator._plain_records),
    # a record msgspec refuses (broken, beyond a double's range) on its own.
    plain = [b'{"n": 0.5}', b'{"n": 2}', b'{"n"', b'{"n": 1e400}', b'{"n": -1e400, "m": [1]}', b"[1]"]
    # The same records with a long decimal: the batch is read whole (parsing.parse_batch).
    whole = [*plain, b'{"n": 1.0000000000000000001}']
    schema = {"type": "object", "properties": {"n": {"maximum": 1}}}
    evaluator = Evaluator()
    evaluator.put("k", compiled(schema))
    for checker in (guard, InlineGuard()):
        [one], [both] = judge(checker, schema, lines(*plain)), judge(checker, schema, lines(*whole))
        assert both == [*one, (7, both[-1][1], False)]
        assert [(n, errors[0]["keyword"], errors[0].get("code")) for n, errors, _ in both] == [
            (2, "maximum", None),
            (3, None, "invalid_json"),
            (4, "maximum", None),
            (6, "type", None),
            (7, "maximum", None),
        ]
    assert evaluator.records("k", "ndjson", lines(*plain), 64, lambda entries, done: None) == one
    assert evaluator.progress.value == len(plain)


def test_the_answer_of_a_check_has_a_byte_budget(guard: Guard) -> None:
    schema = compiled({"items": {"const": "k" * 300}})
    results = guard.check(schema, [["z"] * 150] * 5, seconds=10, response_bytes=60_000)
    sizes = [len(errors) for _, errors, _ in results]
    assert sizes[0] == 100 and sum(sizes) < 200 and sizes[-1] == 0
    assert all(truncated for _, _, truncated in results)


def test_check_deploy_warns_when_a_time_limit_is_turned_off(settings: Any) -> None:
    def warnings() -> list[str]:
        return [m.msg for m in run_checks(include_deployment_checks=True) if m.id == "validation.W001"]

    assert warnings() == []
    settings.VALIDATION_RECORD_TIME_LIMIT = 0
    assert warnings() == [
        "VALIDATION_RECORD_TIME_LIMIT is 0: validations are not time-limited, "
        "and one hostile schema can hold a worker for minutes."
    ]


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="Linux pipes only")
def test_the_requests_pipe_holds_both_batches_in_flight(guard: Guard) -> None:
    guard.child.start()
    most = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    assert fcntl.fcntl(guard.child._requests, fcntl.F_GETPIPE_SZ) >= min(PIPE_BYTES, most)
