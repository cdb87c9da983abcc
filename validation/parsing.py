"""Parsing records next to the engine: a :class:`RawBatch` (record bytes,
numbered) into a :class:`Batch` of values for the engine and record errors
(``invalid_json``, ``invalid_csv``, ``too_deep``) for the records it must not
see. Runs in the guard's child (``validation.evaluator``), so it imports
little: no models, no views, no storage; every limit is an argument.

CSV values are coerced by the types the schema declares for each column
(top-level ``properties``, following ``$ref``s inside the same document):
``integer``, ``number``, ``boolean`` (true/false), ``null`` (empty or
``null``), ``object``/``array`` (the cell is JSON); a cell that fits no
declared type stays a string, and the schema reports it. An empty cell is an
absent property unless the column may be null.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from project import exactjson
from validation.depth import too_deep
from validation.engine import depth_error, record_error

_INF = float("inf")
_INT_DIGITS = 4300  # Python's own bound on an int's digits read from text
Record = tuple[int, Any, dict[str, Any] | None]
Converter = Callable[[str], Any]
_ABSENT = object()
_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(slots=True)
class RawBatch:
    """Consecutive records as bytes: ``items[i]`` is record ``numbers[i]``;
    ``errors`` are records judged while splitting (a JSON item too deep to
    parse), as ``(number, error)``. ``header`` names a CSV upload's columns.
    ``survey`` is ``exactjson.survey`` of JSON items, when the work horse
    took it as it split them (``validation.readers``): the guard's child,
    on the critical path of a job, then need not (it holds for any subset
    of the items too)."""

    numbers: list[int] = field(default_factory=list)
    items: list[bytes] = field(default_factory=list)
    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    header: list[str] | None = None
    survey: tuple[bool, int] | None = None

    def __len__(self) -> int:
        return len(self.items) + len(self.errors)


@dataclass(slots=True)
class Batch:
    """Parsed records: ``values`` (for the engine) numbered by ``numbers``,
    and record ``errors`` as ``(number, error)``."""

    values: list[Any] = field(default_factory=list)
    numbers: Sequence[int] = field(default_factory=list)
    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values) + len(self.errors)

    def in_order(self) -> list[Record]:
        """Every record, values and errors merged, by number."""
        merged: list[Record] = [(n, v, None) for n, v in zip(self.numbers, self.values, strict=True)]
        merged += [(n, None, e) for n, e in self.errors]
        merged.sort(key=lambda record: record[0])
        return merged


def json_record(number: int, item: bytes, limit: int, label: str) -> tuple[Any, dict[str, Any] | None]:
    """One record that the fast path refused, read exactly on its own:
    ``(value, None)``, or ``(None, error)`` (``invalid_json``, ``too_deep``)."""
    try:
        value = exactjson.loads(item)
    except orjson.JSONDecodeError as exc:
        # orjson refuses more than 1024 levels itself: that is too deep too.
        error = depth_error(limit) if "depth limit" in str(exc) else None
        return None, error or record_error("invalid_json", f"{label} {number} is not JSON: {exc}")
    if isinstance(value, (dict, list)) and too_deep(value, limit):
        return None, depth_error(limit)
    return value, None


def _json_slow(raw: RawBatch, limit: int, label: str) -> Batch:
    """Record by record, for a batch with broken JSON in it."""
    batch = Batch(numbers=[])
    for number, item in zip(raw.numbers, raw.items, strict=True):
        value, error = json_record(number, item, limit, label)
        if error is not None:
            batch.errors.append((number, error))
            continue
        batch.values.append(value)
        batch.numbers.append(number)  # type: ignore[attr-defined]
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


def _json_texts(raw: RawBatch, limit: int, label: str) -> Batch:
    # The common case, at C speed: every record is a JSON document (read
    # with numbers exact, ``project.exactjson``).
    try:
        values, opens = exactjson.decode_many(raw.items, raw.survey)
    except exactjson.DECODE_ERRORS:
        batch = _json_slow(raw, limit, label)
    else:
        batch = Batch(values, raw.numbers)
        # Depth cannot exceed the brackets of a record: the most "{" and "["
        # in any record (counted by C loops, decode_many) bounds them all;
        # only past the limit are values walked.
        if opens > limit:
            _drop_deep(batch, limit)
    batch.errors.extend(raw.errors)
    return batch


def parse_batch(fmt: str, raw: RawBatch, *, limit: int, converters: list[Converter] | None = None) -> Batch:
    """Parse ``raw`` (format ``fmt``): values nesting at most ``limit``
    levels; ``converters`` coerce a CSV upload's columns (:func:`converters_for`)."""
    if fmt == "ndjson":
        return _json_texts(raw, limit, "Line")
    if fmt == "json":
        return _json_texts(raw, limit, "Item")
    batch = Batch(numbers=[])
    header = raw.header or []
    for number, item in zip(raw.numbers, raw.items, strict=True):
        number, value, error = _csv_row(number, item, header, converters or [], limit)
        if error is None:
            batch.values.append(value)
            batch.numbers.append(number)  # type: ignore[attr-defined]
        else:
            batch.errors.append((number, error))
    return batch


def converters_for(schema: Any, header: list[str]) -> list[Converter]:
    """The cell coercions of a CSV upload's columns under ``schema``."""
    return [converter(column_types(schema, name)) for name in header]


def _csv_row(number: int, record: bytes, header: list[str], converters: list[Converter], limit: int) -> Record:
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
            exact = _decimal(text)
            if not exact.is_finite() or exact != exact.to_integral_value():
                return _ABSENT
            # 1e999999999 stays a Decimal (the engine reads it as an integer), never a 400 MB int.
            return int(exact) if exact.adjusted() < _INT_DIGITS else exact
    if kind == "number":
        if _INTEGER.fullmatch(text):
            return int(text)  # exact, whatever its size
        return _decimal_number(text)
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower(), _ABSENT)
    if kind == "null":
        return None if text in ("", "null") else _ABSENT
    if kind in ("object", "array"):
        value = exactjson.loads(text)
        return value if isinstance(value, dict if kind == "object" else list) else _ABSENT
    return _ABSENT


def _decimal(text: str) -> Decimal:
    """The number ``text`` exactly; ValueError if it is none (``float``'s
    syntax: spaces, ``_`` between digits, ``inf``/``nan`` then refused)."""
    float(text)
    return Decimal(text)


def _decimal_number(text: str) -> Any:
    """A ``number`` cell: a float when the double keeps the value written,
    else a Decimal (``project.exactjson.number``)."""
    exact = _decimal(text)
    if not exact.is_finite():
        return _ABSENT
    return exactjson.number(str(exact))


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
            if value is not _ABSENT and value == value and value not in (_INF, -_INF):
                return value
        return cell

    return convert
