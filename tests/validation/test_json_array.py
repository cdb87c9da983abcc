"""Splitting a streamed JSON array into its items: exact whatever the chunking,
strict about the array's structure, linear whatever the nesting."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest

from tests.validation.hostile import nested_array
from validation.json_array import ArraySplitter, MalformedArray, RecordTooLarge


def split(data: bytes, chunk: int, *, depth: int = 64, limit: int = 1 << 24) -> list[bytes | None]:
    splitter = ArraySplitter(max_depth=depth, max_record_bytes=limit)
    items: list[bytes | None] = []
    for start in range(0, len(data), chunk):
        items += splitter.feed(data[start : start + chunk])
    return items + splitter.finish()


def value(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth > 9 or roll < 0.3:
        return rnd.choice([1, -2.5e3, 'a\\"b', "x]y{,", True, None, "", "\\\\", "é", 10**18])
    if roll < 0.65:
        return [value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    return {f'k{n}"': value(rnd, depth + 1) for n in range(rnd.randint(0, 3))}


def test_items_come_out_exactly_whatever_the_chunks() -> None:
    rnd = random.Random(7)
    for _ in range(150):
        items = [value(rnd) for _ in range(rnd.randint(0, 6))]
        data = orjson.dumps(items, option=orjson.OPT_INDENT_2 if rnd.random() < 0.5 else 0)
        for chunk in (1, 2, 3, 7, 64, 1 << 20):
            assert [orjson.loads(item) for item in split(data, chunk)] == items  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data", [b'{"a":1}', b"", b"[1, 2", b"[1, 2] [3]", b"[1, 2,]", b"[,1]", b"[1 2]", b'["abc]', b"[[1]"]
)
def test_anything_but_one_array_is_refused(data: bytes) -> None:
    for chunk in (1, 3, 100):
        with pytest.raises(MalformedArray):
            split(data, chunk)


def test_item_content_is_left_to_the_parser_and_a_bom_is_skipped() -> None:
    assert split(b'\xef\xbb\xbf[tru, {"a": }, 1]', 1) == [b"tru", b'{"a": }', b"1"]
    assert split(b" [ ] ", 1) == []


def test_items_deeper_than_the_limit_come_out_unparsed_in_linear_time() -> None:
    for levels in (10_000, 100_000):
        data = b"[" + nested_array(levels) + b", 1]"
        started = time.monotonic()
        assert split(data, 1 << 16) == [None, b"1"]
        assert time.monotonic() - started < levels / 10_000  # ~0.1 s per 100,000 levels when idle
    assert split(b"[" + nested_array(64) + b"]", 5) == [nested_array(64)]
    assert split(b"[" + nested_array(65) + b"]", 5) == [None]


def test_an_item_over_the_record_limit_is_refused() -> None:
    for item in (b'"' + b"x" * 2000 + b'"', b"[" + b"1," * 1000 + b"1]", b"1" * 2000):
        with pytest.raises(RecordTooLarge):
            split(b"[" + item + b"]", 100, limit=1000)
    assert split(b"[" + b"1" * 900 + b"]", 100, limit=1000) == [b"1" * 900]


def test_long_strings_and_escapes_cut_by_chunks_stay_linear() -> None:
    started = time.monotonic()
    data = b'["' + b"\\\\" * 1_000_000 + b'x", "' + b"y" * 3_000_000 + b'"]'
    items = split(data, 65_537)
    assert [len(item or b"") for item in items] == [2_000_003, 3_000_002]
    assert time.monotonic() - started < 5
