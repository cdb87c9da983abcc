"""JSON in and out with numbers kept as the client sent them, at orjson's speed.

orjson keeps integers in [-2^63, 2^64) and silently turns larger ones into
floats (18446744073709551617 becomes 1.8446744073709552e19, equal to its
even neighbour), and it refuses to write them; every decimal becomes the
nearest double (``1.0000000000000000001`` is ``1.0``, ``1e-400`` is ``0.0``).
Every JSON Tollgate reads or writes goes through :func:`loads` and
:func:`dumps` (job records through :func:`decode_many`):

- integers are exact whatever their size (msgspec reads them so);
- a decimal literal is a ``float`` when the double holds the value the
  client sent (its shortest repr is that same number: any literal of at most
  15 significant digits in the double's normal range), else a
  ``decimal.Decimal`` of the literal's digits (:func:`number`). The engine
  (jsonschema-rs) compares floats by their shortest repr and Decimals
  exactly, so every comparison, ``const``/``enum`` and ``multipleOf`` is
  decided on the numbers as written, mixing the two freely;
- the common document, with short decimals only, is read by msgspec at C
  speed: a number hook (a Python call per decimal) costs more than the whole
  parse, so only a document that may hold a literal a double cannot keep
  (:func:`_risky`: a run of 16 digits or a negative exponent of three
  digits; one beyond a double's range makes msgspec refuse the document) is
  read with the hook;
- what msgspec refuses goes to orjson, so that a broken document is refused
  with the message it always had (``orjson.JSONDecodeError``); what orjson
  then reads after all (nesting past msgspec's recursion limit) is read by
  the standard library's parser, exactly, or refused as too deep.
  ``NaN`` and ``Infinity`` are refused;
- :func:`dumps` writes with orjson, an integer beyond 64 bits as its exact
  digits and a Decimal as its literal (``orjson.Fragment``), never as a
  string or a double.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from itertools import accumulate, repeat
from typing import Any

import msgspec
import orjson

# The exceptions msgspec raises for what it will not read.
DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
# Records checked together by decode_many: a few dozen KB, in the CPU's caches.
CHUNK = 64


def number(text: str) -> float | Decimal:
    """The JSON decimal literal ``text`` as a float when the double's
    shortest repr is the same number, else as a Decimal (exact)."""
    if len(text) <= 15 and "e" not in text and "E" not in text:
        return float(text)  # at most 15 digits, no exponent: the double holds it
    value = float(text)
    exact = Decimal(text)
    if math.isfinite(value) and Decimal(repr(value)) == exact:
        return value
    return exact


_plain = msgspec.json.Decoder().decode
_exact = msgspec.json.Decoder(float_hook=number).decode

# Digits and "." become "0", "e"/"E" "e", "-" stays, any other byte "x": a
# literal a double may not keep has 16 digits in its mantissa ("0" * 16) or,
# with at most 15, a negative exponent of three digits or more (an
# underflow, "e-000": with two digits the value is above 1e-115, a normal
# double); one too big for a double makes msgspec refuse the document
# instead (loads, decode_many's caller read it again with the hook).
_TABLE = bytearray(b"x" * 256)
for _byte in b"0123456789.":
    _TABLE[_byte] = ord("0")
_TABLE[ord("e")] = _TABLE[ord("E")] = ord("e")
_TABLE[ord("-")] = ord("-")
_TABLE[ord("{")] = _TABLE[ord("[")] = ord("{")  # for decode_many's bracket counts
_TRANSLATION = bytes(_TABLE)
_LONG = b"0" * 16
_NEGATIVE_EXPONENT = b"e-000"
_OPEN = b"{"


def _risky(data: bytes) -> bool:
    """Whether ``data`` may hold a decimal a double does not keep (a
    superset: digits in strings count too)."""
    text = data.translate(_TRANSLATION)
    return _LONG in text or _NEGATIVE_EXPONENT in text


def decode(data: bytes | bytearray | memoryview | str) -> Any:
    """``data`` parsed (integers and decimals exact, see the module
    docstring); raises one of DECODE_ERRORS for what msgspec refuses."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    return _exact(data) if _risky(raw) else _plain(data)


def survey(items: list[bytes]) -> tuple[bool, int]:
    """What :func:`decode_many` needs to know of ``items`` before reading
    them: whether any may hold a decimal a double does not keep (the
    prefilter of :func:`decode`, a superset) and the most ``{`` and ``[`` of
    any one item (which bounds its nesting, strings included). Checked
    ``CHUNK`` items at a time: one translation serves the prefilter and the
    bracket counts."""
    risky, opens = False, 0
    for start in range(0, len(items), CHUNK):
        part = items[start : start + CHUNK]
        text = b"".join(part).translate(_TRANSLATION)
        bounds = list(accumulate(map(len, part), initial=0))
        opens = max(opens, max(map(text.count, repeat(_OPEN), bounds, bounds[1:]), default=0))
        risky = risky or _LONG in text or _NEGATIVE_EXPONENT in text
    return risky, opens


def decode_plain(data: bytes) -> Any:
    """``data`` parsed by msgspec without the number hook: exact only for a
    document :func:`survey` found not risky. Raises one of DECODE_ERRORS."""
    return _plain(data)


def decode_many(items: list[bytes], surveyed: tuple[bool, int] | None = None) -> tuple[list[Any], int]:
    """Every item of ``items`` parsed as :func:`decode` does, and the most
    ``{`` and ``[`` of any one item (:func:`survey`; ``surveyed`` if the
    caller has it already). Raises one of DECODE_ERRORS if any item is
    refused."""
    risky, opens = surveyed if surveyed is not None else survey(items)
    if risky:
        return [_exact(item) if _risky(item) else _plain(item) for item in items], opens
    return [_plain(item) for item in items], opens


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_float=number, parse_constant=_refuse_constant)


def exact_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """``data`` parsed with every number exact (the slow path). Raises
    orjson.JSONDecodeError like :func:`orjson.loads`."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        return _DECODER.decode(text)
    except RecursionError:
        raise orjson.JSONDecodeError("Exceeds depth limit for parsing", "", 0) from None
    except json.JSONDecodeError as exc:
        raise orjson.JSONDecodeError(exc.msg, exc.doc, exc.pos) from None
    except ValueError as exc:  # invalid UTF-8, NaN, Infinity
        raise orjson.JSONDecodeError(str(exc), "", 0) from None


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """``data`` parsed as JSON, numbers exact. Raises orjson.JSONDecodeError."""
    try:
        return decode(data)
    except DECODE_ERRORS:
        pass
    try:
        return _exact(data)  # a number beyond a double's range, kept as a Decimal
    except DECODE_ERRORS:
        pass
    try:
        orjson.loads(data)  # raises the error clients know
    except orjson.JSONDecodeError as exc:
        if "infinity" not in str(exc):
            raise
    return exact_loads(data)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


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
    """``value`` as JSON bytes (orjson), integers beyond 64 bits and
    Decimals exact."""
    try:
        return orjson.dumps(value, default=_default, option=option)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
    return orjson.dumps(_fragments(value), default=_default, option=option)


class JSONEncoder(json.JSONEncoder):
    """For a Django ``JSONField`` (``encoder=``) that may hold Decimals or
    big integers: the text :func:`dumps` writes."""

    def encode(self, o: Any) -> str:
        return dumps(o).decode()


class JSONDecoder(json.JSONDecoder):
    """For a Django ``JSONField`` (``decoder=``): numbers read as :func:`loads` reads them."""

    def decode(self, s: str, _w: Any = None) -> Any:
        return loads(s)
