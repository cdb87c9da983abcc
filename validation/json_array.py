"""Splitting one streamed JSON array into the bytes of its items, in linear time.

The upload's counter and the worker's reader both use :class:`ArraySplitter`,
so the records reserved are the records validated. It checks the array's own
structure (``[``, items separated by ``,``, ``]``, nothing after it) and
leaves each item's content to orjson in the worker, as NDJSON lines are left:
a malformed item is that record's ``invalid_json`` error.

Linear whatever the input: a regular expression takes a whole item of up to
six levels at C speed; a deeper item, or one cut by a chunk boundary, is
scanned bracket by bracket from where the last chunk stopped, counting its
depth. An item nesting deeper than the depth limit is yielded as ``None``
(never parsed: parsing 100,000 levels is what takes minutes elsewhere); an
item longer than ``VALIDATION_MAX_RECORD_BYTES`` raises RecordTooLarge.
"""

from __future__ import annotations

import re

_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_FLAT = rb'[^"\[\]{}]*'


def _nested(levels: int) -> bytes:
    if levels == 0:
        return _FLAT + rb"(?:" + _STRING + _FLAT + rb")*"
    return _FLAT + rb"(?:(?:" + _STRING + rb"|[\[{]" + _nested(levels - 1) + rb"[\]}])" + _FLAT + rb")*"


# A container of up to LEVELS levels, matched whole at C speed.
LEVELS = 6
_CONTAINER = rb"[\[{]" + _nested(LEVELS - 1) + rb"[\]}]"
# Content of a container: strings, scalars and containers of up to LEVELS - 1
# levels, up to the next bracket that closes it or nests deeper.
_CONTENT = re.compile(_nested(LEVELS - 1))
# One whole item: such a container, a string, or a scalar (a scalar ending at
# the buffer's end may go on in the next chunk).
_ITEM = re.compile(_CONTAINER + rb"|" + _STRING + rb'|[^"\[\]{},\s]+')
_SPACE = re.compile(rb"\s*")
# Everything up to the next bracket (or unfinished string), strings included.
_SKIP = re.compile(_FLAT + rb"(?:" + _STRING + _FLAT + rb")*")
_STRING_END = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"')
_SCALAR_END = re.compile(rb'[^"\[\]{},\s]*')
_BOM = b"\xef\xbb\xbf"


class MalformedArray(ValueError):
    """The upload is not one JSON array; ``str()`` says why."""


class RecordTooLarge(ValueError):
    pass


class _Scan:
    """Where a long item's scan stopped: offset in the item, depth, whether
    inside a string (or a scalar), and the deepest level seen."""

    __slots__ = ("deepest", "depth", "mode", "offset")

    def __init__(self) -> None:
        self.offset = 0
        self.depth = 0
        self.deepest = 0
        self.mode = "start"  # start | value | string | top-string | scalar


class ArraySplitter:
    """``feed`` chunks, get the items completed so far (bytes, or None for an
    item nested deeper than ``max_depth``); ``finish`` at the end. Raises
    MalformedArray, RecordTooLarge."""

    def __init__(self, *, max_depth: int, max_record_bytes: int) -> None:
        self._buffer = bytearray()
        self._state = "start"  # start | item | first | comma | end
        self._scan: _Scan | None = None
        self._max_depth = max_depth
        self._limit = max_record_bytes

    def feed(self, chunk: bytes) -> list[bytes | None]:
        buffer = self._buffer
        buffer += chunk  # amortised: an item cut by many chunks is copied once
        items: list[bytes | None] = []
        del buffer[: self._run(buffer, items)]
        if self._scan is not None and len(buffer) > self._limit:
            raise RecordTooLarge(f"An array item is longer than {self._limit} bytes.")
        return items

    def finish(self) -> list[bytes | None]:
        items: list[bytes | None] = []
        if self._buffer:
            self._buffer += b" "  # a scalar at the very end is complete now
            del self._buffer[: self._run(self._buffer, items)]
        if self._state == "start":
            raise MalformedArray("A JSON upload must be one array of records.")
        if self._state != "end" or self._buffer.strip():
            raise MalformedArray("The JSON array is malformed: it does not end with ']'.")
        return items

    def _run(self, buffer: bytearray, items: list[bytes | None]) -> int:
        """Consume what ``buffer`` completes; return where to go on from."""
        position = 0
        size = len(buffer)
        while True:
            position = _SPACE.match(buffer, position).end()  # type: ignore[union-attr]
            if position >= size:
                return position
            state = self._state
            if state == "start":
                if buffer.startswith(_BOM, position):
                    position += len(_BOM)
                    continue
                if size - position < len(_BOM) and _BOM.startswith(buffer[position:]):
                    return position  # perhaps a byte-order mark, cut by the chunk
                if buffer[position] != 0x5B:  # "["
                    raise MalformedArray("A JSON upload must be one array of records.")
                self._state, position = "first", position + 1
            elif state in ("first", "item"):
                if state == "first" and buffer[position] == 0x5D:  # "]": an empty array
                    self._state, position = "end", position + 1
                    continue
                end, item = self._item(buffer, position)
                if end is None:
                    return position  # the item goes on in the next chunk
                items.append(item)
                self._state, position = "comma", end
            elif state == "comma":
                byte = buffer[position]
                if byte == 0x2C:  # ","
                    self._state = "item"
                elif byte == 0x5D:
                    self._state = "end"
                else:
                    raise MalformedArray(f"The JSON array is malformed: ',' or ']' expected, not {chr(byte)!r}.")
                position += 1
            else:
                raise MalformedArray("The JSON array is malformed: something follows its closing ']'.")

    def _item(self, buffer: bytearray, start: int) -> tuple[int | None, bytes | None]:
        """The end of the item starting at ``start`` and its bytes (None when
        too deep), or (None, None) when the buffer ends first."""
        if buffer[start] in b",]}":
            raise MalformedArray(f"The JSON array is malformed: an item is missing before {chr(buffer[start])!r}.")
        if self._scan is None:
            match = _ITEM.match(buffer, start)
            if match is not None and (match.end() < len(buffer) or buffer[start] in b'"[{'):
                return match.end(), bytes(buffer[start : match.end()])
            self._scan = _Scan()
        end = self._resume(buffer, start)
        if end is None:
            return None, None
        scan, self._scan = self._scan, None
        if end - start > self._limit:
            raise RecordTooLarge(f"An array item is longer than {self._limit} bytes.")
        return end, (None if scan.deepest > self._max_depth else bytes(buffer[start:end]))

    def _resume(self, buffer: bytearray, start: int) -> int | None:
        """Scan on from where the item's scan stopped; its end, or None."""
        scan = self._scan
        assert scan is not None  # noqa: S101 (set by the caller)
        position = start + scan.offset
        size = len(buffer)
        end = None
        while position < size:
            mode = scan.mode
            if mode == "start":
                byte = buffer[position]
                if byte == 0x22:  # '"'
                    scan.mode, position = "top-string", position + 1
                elif byte in b"[{":
                    scan.mode, scan.depth, scan.deepest, position = "value", 1, 1, position + 1
                else:
                    scan.mode = "scalar"
            elif mode in ("string", "top-string"):
                match = _STRING_END.match(buffer, position)
                if match is None:  # stop before a trailing backslash: it escapes what follows
                    trailing = 0
                    while trailing < size - position and buffer[size - 1 - trailing] == 0x5C:
                        trailing += 1
                    position = size - (trailing & 1)
                    break
                position = match.end()
                if mode == "top-string":
                    end = position
                    break
                scan.mode = "value"
            elif mode == "scalar":
                position = _SCALAR_END.match(buffer, position).end()  # type: ignore[union-attr]
                if position < size:
                    end = position
                break
            else:
                # Within the limit whatever is nested here: skip shallow containers whole.
                skip = _CONTENT if scan.depth + LEVELS - 1 <= self._max_depth else _SKIP
                position = skip.match(buffer, position).end()  # type: ignore[union-attr]
                if position >= size:
                    break
                byte = buffer[position]
                position += 1
                if byte == 0x22:  # a string the buffer ends in
                    scan.mode = "string"
                elif byte in b"[{":
                    scan.depth += 1
                    scan.deepest = max(scan.deepest, scan.depth)
                else:
                    scan.depth -= 1
                    if scan.depth == 0:
                        end = position
                        break
        scan.offset = position - start
        return end
