"""API key format, generation, parsing and hashing.

A key reads ``tg_<prefix>_<secret><checksum>``:

- ``prefix``: 8 lowercase letters and digits, public, unique, stored in clear;
  it names the key in logs and in the admin;
- ``secret``: 32 base62 characters (190 bits), stored only as its SHA-256;
- ``checksum``: 6 base62 characters of the CRC-32 of everything before it, so
  a mistyped or truncated key is refused before any database or Redis work
  (the scheme GitHub uses for its tokens).

The secret is random enough that a fast hash is the right one: there is
nothing to brute-force, and a slow hash would cost every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass

BASE62 = string.digits + string.ascii_letters
PREFIX_ALPHABET = string.digits + string.ascii_lowercase
PREFIX_LENGTH = 8
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6

_KEY = re.compile(r"tg_([0-9a-z]{8})_([0-9A-Za-z]{32})([0-9A-Za-z]{6})")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    prefix: str
    secret: str


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate() -> tuple[str, ParsedKey]:
    """A new random key: ``(full_key, ParsedKey)``."""
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(BASE62) for _ in range(SECRET_LENGTH))
    body = f"tg_{prefix}_{secret}"
    return body + _checksum(body), ParsedKey(prefix, secret)


def parse(raw: str) -> ParsedKey | None:
    """The parts of ``raw``, or None if it is malformed or its checksum is wrong."""
    match = _KEY.fullmatch(raw)
    if match is None:
        return None
    prefix, secret, checksum = match.groups()
    if not hmac.compare_digest(_checksum(f"tg_{prefix}_{secret}"), checksum):
        return None
    return ParsedKey(prefix, secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    """Constant-time comparison of ``secret`` with a stored hash."""
    return hmac.compare_digest(hash_secret(secret), secret_hash)
