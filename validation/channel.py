"""Messages between the guard (``validation.guard``) and its child
(``validation.evaluator``), over a pair of pipes.

Each message is an 8-byte little-endian length and a body. Requests (parent to
child) are ``marshal``: they carry record bytes and Python numbers exactly,
and the child trusts its parent; one holding a ``decimal.Decimal`` (a
decimal a double does not keep, ``project.exactjson``), which marshal cannot
carry, is a pickle instead, told apart by the body's first byte. Replies (child to parent) are JSON (``project.exactjson``: integers exact):
the parent parses what a process that ran hostile input wrote with a parser
that is safe on any bytes.
"""

from __future__ import annotations

import marshal
import os
import pickle
import struct
from typing import Any

from project import exactjson

_LENGTH = struct.Struct("<Q")
_MARSHAL, _PICKLE = b"M", b"P"


def request(message: tuple[Any, ...]) -> bytes:
    try:
        kind, body = _MARSHAL, marshal.dumps(message)
    except ValueError:  # "unmarshallable object": a Decimal in it
        kind, body = _PICKLE, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return b"".join((_LENGTH.pack(len(body) + 1), kind, body))


def reply(message: list[Any]) -> bytes:
    body = exactjson.dumps(message)
    return _LENGTH.pack(len(body)) + body


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a pipe takes 64 KiB at a time)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_request(fd: int) -> tuple[Any, ...] | None:
    """The next request from ``fd``, blocking; None at end of file."""
    header = _read_exactly(fd, _LENGTH.size)
    if header is None:
        return None
    body = _read_exactly(fd, _LENGTH.unpack(header)[0])
    if body is None:
        return None
    if body[:1] == _PICKLE:
        return pickle.loads(memoryview(body)[1:])  # type: ignore[no-any-return]  # noqa: S301 (from the parent, see the module docstring)
    return marshal.loads(memoryview(body)[1:])  # type: ignore[no-any-return]  # noqa: S302 (from the parent process, see the module docstring)


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    while size:
        part = os.read(fd, min(size, 1 << 20))
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


class Replies:
    """Replies read from a pipe as they arrive: ``feed`` what ``os.read``
    returned, then ``pop`` complete messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def pop(self) -> list[Any] | None:
        if len(self._buffer) < _LENGTH.size:
            return None
        size = _LENGTH.unpack_from(self._buffer)[0]
        end = _LENGTH.size + size
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[_LENGTH.size : end])
        del self._buffer[:end]
        return exactjson.loads(body)  # type: ignore[no-any-return]
