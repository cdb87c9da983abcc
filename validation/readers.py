"""Records of a stored upload, one at a time: ``(number, value, error)``.

``error`` is None for a record the engine should see, or a record error
(``invalid_json``, ``invalid_csv``, ``too_deep``) for one it must not; the
job goes on either way. Numbers follow ``validation.formats``.

CSV values are coerced by the types the schema declares for each column
(top-level ``properties``, following ``$ref``s inside the same document):
``integer``, ``number``, ``boolean`` (true/false), ``null`` (empty or
``null``), ``object``/``array`` (the cell is JSON); a cell that fits no
declared type stays a string, and the schema reports it. An empty cell is an
absent property unless the column may be null.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import ijson
import orjson

from validation.engine import depth_error, max_depth, record_error, too_deep
from validation.exceptions import InvalidUpload
from validation.formats import CsvRecords, LineSplitter, read_chunks

Record = tuple[int, Any, dict[str, Any] | None]
_ABSENT = object()
BATCH = 64
SLICE = 64


@dataclass(slots=True)
class Batch:
    """Consecutive records: ``values`` (for the engine) numbered by
    ``numbers``, and record ``errors`` as ``(number, error)``. Batches let
    the worker validate with ``map`` (no Python loop per valid record)."""

    values: list[Any] = field(default_factory=list)
    numbers: Sequence[int] = field(default_factory=list)
    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values) + len(self.errors)


def records_of(batches: Iterable[Batch]) -> Iterator[Record]:
    """The records of ``batches`` one by one, in order (tests, small jobs)."""
    for batch in batches:
        merged: list[tuple[int, Any, Any]] = [(n, v, None) for n, v in zip(batch.numbers, batch.values, strict=True)]
        merged += [(n, None, e) for n, e in batch.errors]
        yield from sorted(merged, key=lambda record: record[0])


def _ndjson_slow(lines: list[bytes], first: int, limit: int) -> Batch:
    """Line by line, for a chunk with blank or broken lines."""
    batch = Batch(numbers=[])
    for number, line in enumerate(lines, first):
        if not line or line.isspace():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            # orjson refuses more than 1024 levels itself: that is too deep too.
            error = depth_error(limit) if "depth limit" in str(exc) else None
            batch.errors.append((number, error or record_error("invalid_json", f"Line {number} is not JSON: {exc}")))
            continue
        batch.values.append(value)
        batch.numbers.append(number)  # type: ignore[attr-defined]
    _drop_deep(batch, limit)
    return batch


def _drop_deep(batch: Batch, limit: int) -> None:
    deep = [i for i, value in enumerate(batch.values) if isinstance(value, (dict, list)) and too_deep(value, limit)]
    if not deep:
        return
    numbers = list(batch.numbers)
    for i in reversed(deep):
        batch.errors.append((numbers[i], depth_error(limit)))
        del batch.values[i], numbers[i]
    batch.numbers = numbers


def ndjson_batches(file: Any) -> Iterator[Batch]:
    """Batches of up to ``SLICE`` lines: small enough that a record is
    still in the CPU cache when it is validated after being parsed."""
    limit = max_depth()
    splitter = LineSplitter()
    loads = orjson.loads
    number = 0
    chunks = read_chunks(file)
    while True:
        chunk = next(chunks, None)
        lines = splitter.feed(chunk) if chunk is not None else splitter.finish()
        for start in range(0, len(lines), SLICE):
            part = lines[start : start + SLICE]
            first, number = number + 1, number + len(part)
            try:
                # The common case, at C speed: every line is a JSON document.
                batch = Batch([loads(line) for line in part], range(first, number + 1))
            except orjson.JSONDecodeError:
                batch = _ndjson_slow(part, first, limit)
            else:
                # Depth cannot exceed the brackets on a line. The most "{" on
                # any line plus the most "[" bounds them all, counted by C
                # loops; only past the limit are values walked.
                opens = max(map(bytes.count, part, repeat(b"{")), default=0)
                if opens + max(map(bytes.count, part, repeat(b"[")), default=0) > limit:
                    _drop_deep(batch, limit)
            if len(batch):
                yield batch
        if chunk is None:
            return


def _batched(records: Iterator[Record]) -> Iterator[Batch]:
    batch = Batch(numbers=[])
    for number, value, error in records:
        if error is None:
            batch.values.append(value)
            batch.numbers.append(number)  # type: ignore[attr-defined]
        else:
            batch.errors.append((number, error))
        if len(batch) >= BATCH:
            yield batch
            batch = Batch(numbers=[])
    if len(batch):
        yield batch


def batches(fmt: str, file: Any, schema: Any) -> Iterator[Batch]:
    """The records of a stored upload of format ``fmt``, in batches."""
    if fmt == "ndjson":
        return ndjson_batches(file)
    if fmt == "json":
        return _batched(json_records(file))
    return _batched(csv_records(file, schema))


def json_records(file: Any) -> Iterator[Record]:
    limit = max_depth()
    for index, value in enumerate(ijson.items(file, "item", use_float=True)):
        if isinstance(value, (dict, list)) and too_deep(value, limit):
            yield index, None, depth_error(limit)
        else:
            yield index, value, None


def parse_header(record: bytes) -> list[str]:
    """The column names of a CSV header record. Raises InvalidUpload."""
    try:
        text = record.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidUpload("The CSV header is not UTF-8.") from None
    names = [name.strip() for name in next(csv.reader([text]), [])]
    if not names or any(not name for name in names) or len(set(names)) != len(names):
        raise InvalidUpload("The CSV header must name every column, each once.")
    return names


def csv_records(file: Any, schema: Any) -> Iterator[Record]:
    assembler = CsvRecords()
    header: list[str] | None = None
    converters: list[Callable[[str], Any]] = []
    number = 0
    chunks = read_chunks(file)
    while True:
        chunk = next(chunks, None)
        records = assembler.feed(chunk) if chunk is not None else assembler.finish()
        for record in records:
            if header is None:
                header = parse_header(record)
                converters = [converter(column_types(schema, name)) for name in header]
                continue
            number += 1
            yield _csv_row(number, record, header, converters)
        if chunk is None:
            return


def _csv_row(number: int, record: bytes, header: list[str], converters: list[Callable[[str], Any]]) -> Record:
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError:
        return number, None, record_error("invalid_csv", f"Row {number} is not UTF-8.")
    cells = next(csv.reader([text]), [])
    if len(cells) != len(header):
        message = f"Row {number} has {len(cells)} fields; the header has {len(header)}."
        return number, None, record_error("invalid_csv", message)
    row = {}
    for name, cell, convert in zip(header, cells, converters, strict=True):
        value = convert(cell)
        if value is not _ABSENT:
            row[name] = value
    limit = max_depth()
    if too_deep(row, limit):
        return number, None, depth_error(limit)
    return number, row, None


def column_types(schema: Any, name: str) -> tuple[str, ...]:
    """The types the schema declares for property ``name`` (empty: unknown)."""
    root = schema
    for _ in range(8):  # follow local $refs, a few hops at most
        if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
            break
        schema = _local(root, schema["$ref"])
    properties = schema.get("properties") if isinstance(schema, dict) else None
    prop = properties.get(name) if isinstance(properties, dict) else None
    for _ in range(8):
        if not isinstance(prop, dict) or not isinstance(prop.get("$ref"), str):
            break
        prop = _local(root, prop["$ref"])
    declared = prop.get("type") if isinstance(prop, dict) else None
    if isinstance(declared, str):
        return (declared,)
    if isinstance(declared, list):
        return tuple(t for t in declared if isinstance(t, str))
    return ()


def _local(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _scalar(cell: str, kind: str) -> Any:
    text = cell.strip()
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            number = float(text)
            return int(number) if number.is_integer() else _ABSENT
    if kind == "number":
        number = float(text)
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower(), _ABSENT)
    if kind == "null":
        return None if text in ("", "null") else _ABSENT
    if kind in ("object", "array"):
        value = orjson.loads(text)
        return value if isinstance(value, dict if kind == "object" else list) else _ABSENT
    return _ABSENT


def converter(types: tuple[str, ...]) -> Callable[[str], Any]:
    """The cell → value function for a column declaring ``types``."""
    order = [kind for kind in ("null", "integer", "number", "boolean", "object", "array") if kind in types]

    def convert(cell: str) -> Any:
        if cell == "" and "null" not in types:
            return _ABSENT
        for kind in order:
            try:
                value = _scalar(cell, kind)
            except (ValueError, orjson.JSONDecodeError):
                continue
            if value is not _ABSENT and value == value and value not in (float("inf"), float("-inf")):
                return value
        return cell

    return convert
