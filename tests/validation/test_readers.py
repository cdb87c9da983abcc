"""Record boundaries and readers: what the upload counts is what the worker reads."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import orjson
import pytest

from project import exactjson
from validation.engine import compile_schema
from validation.evaluator import Evaluator
from validation.exceptions import InvalidUpload
from validation.formats import counter_for
from validation.parsing import column_types, converter
from validation.readers import batches, raw_batches, records_of

NDJSON = b'{"a":1}\r\n\n  \n{"a":2}\nnot json\n{"a":\n[1]'
CSV = b'\xef\xbb\xbfid,note,qty\r\n1,"two\r\nlines, and ""quotes""",3\r\n\r\n2,plain,x\r\n3,"unclosed\n4,a,5\n'
ARRAY = b' [ {"a": 1}, 2.5, "x", [1, [2]], null ] '


def count(fmt: str, data: bytes, chunk: int) -> int:
    counter = counter_for(fmt)
    for start in range(0, len(data), chunk):
        counter.feed(data[start : start + chunk])
    return counter.finish()


def read(fmt: str, data: bytes, schema: Any = None) -> list[tuple[int, Any, Any]]:
    return list(records_of(batches(fmt, io.BytesIO(data), schema or {})))


@pytest.mark.parametrize(("fmt", "data"), [("ndjson", NDJSON), ("csv", CSV), ("json", ARRAY)])
def test_the_upload_count_is_the_number_of_records_read_whatever_the_chunking(fmt: str, data: bytes) -> None:
    records = len(read(fmt, data))
    assert records > 0
    for chunk in range(1, len(data) + 1):
        assert count(fmt, data, chunk) == records, chunk


def test_ndjson_records_are_numbered_by_line_and_broken_lines_are_record_errors() -> None:
    records = read("ndjson", NDJSON)
    assert [(number, value) for number, value, error in records if error is None] == [
        (1, {"a": 1}),
        (4, {"a": 2}),
        (7, [1]),
    ]
    assert [(number, error["code"]) for number, _, error in records if error] == [
        (5, "invalid_json"),
        (6, "invalid_json"),
    ]


def test_ndjson_fast_and_slow_paths_agree() -> None:
    clean = b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(300))
    broken = clean.replace(b'{"n":150}', b'{"n":')
    fast, slow = read("ndjson", clean), read("ndjson", broken)
    assert [n for n, _, _ in fast] == [n for n, _, _ in slow] == list(range(1, 301))
    assert [e["code"] for _, _, e in slow if e] == ["invalid_json"]
    assert [v for _, v, _ in fast][:149] == [v for _, v, _ in slow][:149]


def test_json_array_items_are_numbered_from_zero() -> None:
    assert [(n, v) for n, v, _ in read("json", ARRAY)] == [(0, {"a": 1}), (1, 2.5), (2, "x"), (3, [1, [2]]), (4, None)]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"a": 1}', "one array"),
        (b"", "one array"),
        (b"[1, 2", "malformed"),
        (b"[1, 2] [3]", "malformed"),
        (b"[1, 2,]", "malformed"),
    ],
)
def test_a_json_upload_that_is_not_one_array_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidUpload, match=problem):
        count("json", data, 3)


def test_csv_rows_follow_rfc_4180_and_are_numbered_from_one() -> None:
    schema = {"properties": {"id": {"type": "integer"}, "qty": {"type": "integer"}}}
    rows = read("csv", CSV, schema)
    assert rows[0] == (1, {"id": 1, "note": 'two\r\nlines, and "quotes"', "qty": 3}, None)
    assert rows[1] == (2, {"id": 2, "note": "plain", "qty": "x"}, None)  # "x" stays a string: the schema says why
    number, value, error = rows[2]  # the unclosed quote swallows the rest of the file
    assert (number, value, error["code"]) == (3, None, "invalid_csv")
    assert len(rows) == 3


@pytest.mark.parametrize("header", [b"", b"a,,b\n1,2,3\n", b"a,a\n1,2\n", b"\xff\xfe,x\n1,2\n"])
def test_a_csv_upload_needs_a_header_of_unique_names(header: bytes) -> None:
    with pytest.raises(InvalidUpload):
        count("csv", header, 4)


def test_csv_cells_are_coerced_by_the_declared_types() -> None:
    schema = {
        "$defs": {"money": {"type": "number"}},
        "properties": {
            "n": {"type": "integer"},
            "price": {"$ref": "#/$defs/money"},
            "ok": {"type": "boolean"},
            "note": {"type": ["string", "null"]},
            "tags": {"type": "array"},
            "meta": {"type": "object"},
            "either": {"type": ["integer", "boolean"]},
        },
    }
    assert column_types(schema, "price") == ("number",)
    assert column_types(schema, "unknown") == ()
    cases = {
        "n": [
            ("42", 42),
            ("4.0", 4),
            ("4.5", "4.5"),
            ("", None),
            ("1.0000000000000000001", "1.0000000000000000001"),  # not an integer, however close
            ("1e999999999", Decimal("1e999999999")),  # an integer, kept as a Decimal
        ],
        "price": [
            ("9.95", 9.95),
            ("10", 10),
            ("1e3", 1000.0),
            ("nan", "nan"),
            ("inf", "inf"),
            ("1.0000000000000000001", Decimal("1.0000000000000000001")),
            ("1e400", Decimal("1e400")),
            ("1e-400", Decimal("1e-400")),
        ],
        "ok": [("true", True), ("FALSE", False), ("yes", "yes")],
        "note": [("", None), ("null", None), ("text", "text")],
        "tags": [('["a", 1]', ["a", 1]), ("{}", "{}"), ("[", "[")],
        "meta": [('{"k": 1}', {"k": 1})],
        "either": [("7", 7), ("true", True), ("x", "x")],
    }
    for column, pairs in cases.items():
        convert = converter(column_types(schema, column))
        for cell, expected in pairs:
            value = convert(cell)
            assert (value if value is not None else None) == expected or (expected is None and cell == ""), (
                column,
                cell,
                value,
            )


def test_an_empty_cell_is_an_absent_property() -> None:
    rows = read("csv", b"id,qty\n1,\n", {"properties": {"qty": {"type": "integer"}}})
    assert rows == [(1, {"id": "1"}, None)]


def test_csv_rows_with_the_wrong_number_of_fields_are_record_errors() -> None:
    rows = read("csv", b"a,b\n1,2\n1,2,3\n1\n")
    assert [(n, e["code"] if e else None) for n, _, e in rows] == [(1, None), (2, "invalid_csv"), (3, "invalid_csv")]


def test_records_larger_than_the_limit_are_refused_at_upload(settings: Any) -> None:
    settings.VALIDATION_MAX_RECORD_BYTES = 100
    with pytest.raises(InvalidUpload, match="longer than 100 bytes"):
        count("ndjson", b"x" * 500, 64)
    with pytest.raises(InvalidUpload, match="longer than 100 bytes"):
        count("csv", b'a\n"' + b"x\n" * 200, 64)


def test_deep_records_are_record_errors_in_every_format(settings: Any) -> None:
    settings.VALIDATION_MAX_DEPTH = 3
    deep = [[[[1]]]]
    line = orjson.dumps(deep)
    assert read("ndjson", line + b"\n" + b"[[[1]]]")[0][2]["code"] == "too_deep"
    assert read("ndjson", b"[[[1]]]")[0][2] is None
    # Brackets inside strings are counted by the cheap pre-check, never judged by it.
    assert read("ndjson", b'{"a": "[[[[[[[[[["}')[0][2] is None
    assert read("json", b"[" + line + b", 1]")[0][2]["code"] == "too_deep"
    rows = read("csv", b'a\n"[[[[1]]]]"\n', {"properties": {"a": {"type": "array"}}})
    assert rows[0][2]["code"] == "too_deep"


def test_a_malformed_json_item_is_that_records_error_and_the_job_goes_on() -> None:
    records = read("json", b'[{"a": 1}, {"a": }, tru, [[[[[[[[1]]]]]]]]]')
    assert [(n, e["code"] if e else None) for n, _, e in records] == [
        (0, None),
        (1, "invalid_json"),
        (2, "invalid_json"),
        (3, None),
    ]
    assert "Item 1 is not JSON" in records[1][2]["message"]


def test_json_items_over_the_record_limit_are_refused_at_upload(settings: Any) -> None:
    settings.VALIDATION_MAX_RECORD_BYTES = 100
    with pytest.raises(InvalidUpload, match="longer than 100 bytes"):
        count("json", b'[{"a": "' + b"x" * 500 + b'"}]', 64)


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_the_work_horse_surveys_json_records_as_it_splits_them(fmt: str) -> None:
    lines = [b'{"n": 0.5}', b'{"n": [[1]]}', b'{"n": 1.0000000000000000001}']
    data = b"\n".join(lines) + b"\n" if fmt == "ndjson" else b"[" + b",".join(lines) + b"]"
    [raw] = list(raw_batches(fmt, io.BytesIO(data)))
    assert raw.survey == exactjson.survey(raw.items) == (True, 3)
    # The guard's child reads by the survey it is sent, not one of its own.
    evaluator = Evaluator()
    evaluator.put("k", compile_schema({"properties": {"n": {"maximum": 1}}}, resolve=lambda uri: None))
    raw.survey = (False, 3)  # "no long decimals": read as doubles (1.0 passes)
    assert evaluator.records("k", fmt, raw, 64, lambda entries, done: None) == []
    raw.survey = (True, 3)  # read exactly: 1.0000000000000000001 is past the maximum
    assert [number for number, _, _ in evaluator.records("k", fmt, raw, 64, lambda entries, done: None)] == [
        raw.numbers[2]
    ]
