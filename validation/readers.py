"""Records of a stored upload, split where it is read.

:func:`raw_batches` splits a stored upload into :class:`~validation.parsing.RawBatch` es,
the record bytes numbered, with the same splitters that counted the upload
(``validation.formats``); ``validation.parsing`` parses them, next to the
engine (in the guard's child, ``validation.guard``). Numbers follow
``validation.formats``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from project import exactjson
from validation.depth import max_depth
from validation.engine import depth_error
from validation.formats import CsvRecords, LineSplitter, array_splitter, parse_header, read_chunks
from validation.parsing import Batch, Converter, RawBatch, Record, converters_for, parse_batch


def records_of(batches: Iterable[Batch]) -> Iterator[Record]:
    """The records of ``batches`` one by one, in order (tests, small jobs)."""
    for batch in batches:
        yield from batch.in_order()


def _numbered(lines: list[bytes], first: int) -> RawBatch:
    """The non-blank ``lines``, numbered from ``first`` (blank lines count)."""
    if all(lines) and not any(map(bytes.isspace, lines)):
        return RawBatch(list(range(first, first + len(lines))), lines)
    batch = RawBatch()
    for number, line in enumerate(lines, first):
        if line and not line.isspace():
            batch.numbers.append(number)
            batch.items.append(line)
    return batch


def raw_batches(fmt: str, file: Any) -> Iterator[RawBatch]:
    """The records of a stored upload of format ``fmt``, split, one batch per
    chunk read. Raises InvalidUpload for a CSV upload without a header."""
    chunks: Iterator[bytes] = read_chunks(file)
    if fmt == "ndjson":
        splitter = LineSplitter()
        number = 1
        for chunk in chain(chunks, [None]):
            lines = splitter.feed(chunk) if chunk is not None else splitter.finish()
            if lines:
                batch = _numbered(lines, number)
                number += len(lines)
                if batch:
                    batch.survey = exactjson.survey(batch.items)
                    yield batch
        return
    if fmt == "json":
        items_of = array_splitter()
        index, limit = 0, max_depth()
        for chunk in chain(chunks, [None]):
            items = items_of.feed(chunk) if chunk is not None else items_of.finish()
            batch = RawBatch()
            for item in items:
                if item is None:
                    batch.errors.append((index, depth_error(limit)))
                else:
                    batch.numbers.append(index)
                    batch.items.append(item)
                index += 1
            if batch:
                batch.survey = exactjson.survey(batch.items)
                yield batch
        return
    records = CsvRecords()
    header: list[str] | None = None
    number = 0
    for chunk in chain(chunks, [None]):
        batch = RawBatch(header=header)
        for record in records.feed(chunk) if chunk is not None else records.finish():
            if header is None:
                header = batch.header = parse_header(record)
                continue
            number += 1
            batch.numbers.append(number)
            batch.items.append(record)
        if batch:
            yield batch


def batches(fmt: str, file: Any, schema: Any) -> Iterator[Batch]:
    """The records of a stored upload, split and parsed in this process."""
    limit = max_depth()
    converters: list[Converter] | None = None
    for raw in raw_batches(fmt, file):
        if fmt == "csv" and converters is None:
            converters = converters_for(schema, raw.header or [])
        yield parse_batch(fmt, raw, limit=limit, converters=converters)
