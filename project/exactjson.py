"""JSON in and out with integers of any size kept exact, at orjson's speed.

orjson keeps integers in [-2^63, 2^64) and silently turns larger ones into
floats (18446744073709551617 becomes 1.8446744073709552e19, equal to its
even neighbour), and it refuses to write them. Every JSON Tollgate reads or
writes goes through :func:`loads` and :func:`dumps`:

- :func:`loads` reads with msgspec, whose integers are exact whatever their
  size and which is as fast as orjson (faster on the benchmark's records).
  What msgspec refuses goes to orjson, so that a broken document is refused
  with the message it always had (``orjson.JSONDecodeError``); what orjson
  then reads after all (nesting past msgspec's recursion limit) is read by
  the standard library's parser, exactly, or refused as too deep.
  ``NaN``, ``Infinity`` and numbers beyond a double's range are refused.
- :func:`dumps` writes with orjson, and an integer beyond 64 bits as its
  exact digits (an ``orjson.Fragment``).

Decimals are read as doubles, as before: the engine compares them as the
nearest double either way.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import orjson

# The exceptions msgspec raises for what it will not read.
DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)
decode = msgspec.json.Decoder().decode
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number is infinity when parsed as double")
    return value


_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_refuse_constant)


def exact_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """``data`` parsed with every integer exact (the slow path). Raises
    orjson.JSONDecodeError like :func:`orjson.loads`."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        return _DECODER.decode(text)
    except RecursionError:
        raise orjson.JSONDecodeError("Exceeds depth limit for parsing", "", 0) from None
    except json.JSONDecodeError as exc:
        raise orjson.JSONDecodeError(exc.msg, exc.doc, exc.pos) from None
    except ValueError as exc:  # invalid UTF-8, NaN, Infinity, 1e400
        raise orjson.JSONDecodeError(str(exc), "", 0) from None


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """``data`` parsed as JSON, integers exact. Raises orjson.JSONDecodeError."""
    try:
        return decode(data)
    except DECODE_ERRORS:
        pass
    orjson.loads(data)  # raises the error clients know
    return exact_loads(data)


def _fragments(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return orjson.Fragment(str(value)) if not _INT64_MIN <= value <= _UINT64_MAX else value
    if isinstance(value, dict):
        return {key: _fragments(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_fragments(item) for item in value]
    return value


def dumps(value: Any, option: int | None = None) -> bytes:
    """``value`` as JSON bytes (orjson), integers beyond 64 bits exact."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
    return orjson.dumps(_fragments(value), option=option)
