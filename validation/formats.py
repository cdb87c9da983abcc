"""Record boundaries of the three upload formats, push-based.

The same splitters serve the upload (which counts records while the body
streams to storage) and the worker (which reads them back from storage), so
the number of records reserved against the quota is, by construction, the
number of records the job validates.

- NDJSON: one record per line that is not blank. Record N is line N of the
  file (1-based, blank lines counted as lines, not as records).
- JSON: the top-level value must be an array; each item is a record, numbered
  by its 0-based index. ``validation.json_array`` splits it as it streams;
  the whole array is never in memory.
- CSV: RFC 4180 records: a line break inside double quotes continues the
  record. The first record is the header; data rows are numbered 1-based.
"""

from __future__ import annotations

import csv
from typing import Any

from django.conf import settings

from validation.depth import max_depth
from validation.exceptions import InvalidUpload
from validation.json_array import ArraySplitter, MalformedArray, RecordTooLarge

# One record (line, CSV row) may not exceed this: a "line" of 500 MB without
# a newline must not be buffered whole, at upload or in the worker.
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024


def max_record_bytes() -> int:
    return int(getattr(settings, "VALIDATION_MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES))


class LineSplitter:
    """Splits a byte stream at ``\\n`` (dropped). ``feed`` returns the
    complete lines so far; ``finish`` the last line without a newline."""

    __slots__ = ("_limit", "_rest")

    def __init__(self) -> None:
        self._rest = b""
        self._limit = max_record_bytes()

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = chunk.split(b"\n")
        if self._rest:
            lines[0] = self._rest + lines[0]  # not rest + chunk: that copies the whole chunk
        self._rest = lines.pop()
        if len(self._rest) > self._limit:
            raise RecordTooLarge(f"A line is longer than {self._limit} bytes.")
        return lines

    def finish(self) -> list[bytes]:
        rest, self._rest = self._rest, b""
        return [rest] if rest else []


class CsvRecords:
    """Assembles CSV records from lines: a line with an odd number of ``"``
    opens (or closes) a quoted field, and the record goes on until it is
    closed. Blank records are skipped."""

    __slots__ = ("_limit", "_open", "_pending", "_size", "_splitter")

    def __init__(self) -> None:
        self._splitter = LineSplitter()
        self._pending: list[bytes] = []
        self._open = False
        self._size = 0
        self._limit = max_record_bytes()

    def _add(self, line: bytes, out: list[bytes]) -> None:
        if line.count(b'"') & 1:
            self._open = not self._open
        if self._open:
            self._pending.append(line)
            self._size += len(line) + 1
            if self._size > self._limit:
                raise RecordTooLarge(f"A CSV record is longer than {self._limit} bytes.")
            return
        if self._pending:
            self._pending.append(line)
            line = b"\n".join(self._pending)
            self._pending, self._size = [], 0
        if line and not line.isspace():
            out.append(line)

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        for line in self._splitter.feed(chunk):
            self._add(line, out)
        return out

    def finish(self) -> list[bytes]:
        out: list[bytes] = []
        for line in self._splitter.finish():
            self._add(line, out)
        if self._pending:  # an unclosed quote runs to the end of the file
            out.append(b"\n".join(self._pending))
            self._pending, self._size, self._open = [], 0, False
        return out


class Counter:
    """Counts the records of an upload as it streams. ``feed`` every chunk,
    then ``finish`` returns the count. Raises InvalidUpload for an upload the
    worker could not read (not an array, broken JSON, no CSV header)."""

    def feed(self, chunk: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> int:
        raise NotImplementedError


def _non_blank(lines: list[bytes]) -> int:
    """How many of ``lines`` are not blank (empty or whitespace only); with
    C loops only (``all``, ``map``) when none is, the common case."""
    if all(lines) and not any(map(bytes.isspace, lines)):
        return len(lines)
    return sum(1 for line in lines if line and not line.isspace())


class NdjsonCounter(Counter):
    def __init__(self) -> None:
        self._splitter = LineSplitter()
        self.count = 0

    def feed(self, chunk: bytes) -> None:
        try:
            lines = self._splitter.feed(chunk)
        except RecordTooLarge as exc:
            raise InvalidUpload(str(exc)) from None
        self.count += _non_blank(lines)

    def finish(self) -> int:
        self.count += sum(1 for line in self._splitter.finish() if line and not line.isspace())
        return self.count


def array_splitter() -> ArraySplitter:
    """The splitter of JSON-array uploads, with the current limits."""
    return ArraySplitter(max_depth=max_depth(), max_record_bytes=max_record_bytes())


class JsonArrayCounter(Counter):
    def __init__(self) -> None:
        self._splitter = array_splitter()
        self.count = 0

    def feed(self, chunk: bytes) -> None:
        try:
            self.count += len(self._splitter.feed(chunk))
        except (MalformedArray, RecordTooLarge) as exc:
            raise InvalidUpload(str(exc)) from None

    def finish(self) -> int:
        try:
            self.count += len(self._splitter.finish())
        except MalformedArray as exc:
            raise InvalidUpload(str(exc)) from None
        return self.count


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


class CsvCounter(Counter):
    """Counts data rows; the header must be a row of unique, non-empty names."""

    def __init__(self) -> None:
        self._records = CsvRecords()
        self.header: list[str] | None = None
        self.count = 0

    def _take(self, records: list[bytes]) -> None:
        if records and self.header is None:
            self.header = parse_header(records[0])
            records = records[1:]
        self.count += len(records)

    def feed(self, chunk: bytes) -> None:
        try:
            self._take(self._records.feed(chunk))
        except RecordTooLarge as exc:
            raise InvalidUpload(str(exc)) from None

    def finish(self) -> int:
        self._take(self._records.finish())
        if self.header is None:
            raise InvalidUpload("A CSV upload needs a header row.")
        return self.count


def counter_for(fmt: str) -> Counter:
    return {"ndjson": NdjsonCounter, "json": JsonArrayCounter, "csv": CsvCounter}[fmt]()


def read_chunks(file: Any, size: int = 1 << 16) -> Any:
    """Chunks of a storage file (any backend): never the whole file at once.
    64 KiB: a line split off a chunk this small is still in the CPU cache
    when it is parsed and validated (1 MiB chunks cost ~15% in the bench)."""
    while True:
        chunk = file.read(size)
        if not chunk:
            return
        yield chunk
