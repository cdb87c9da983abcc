"""URI references as JSON Schema uses them: RFC 3986 resolution, and the
lenient reading of ``$ref``/``$id`` that validators in common use share.

RFC 3986 allows only unreserved, reserved and ``%XX`` characters in a URI;
python-jsonschema, ajv and browsers accept any string and treat a character
outside that set (a space, ``<``, ``>``, ``"``, ``{``, ``}``, ``|``, ``\\``,
``^``, a backtick, a control or non-ASCII character, a second ``#``, a ``%``
not followed by two hex digits) as its UTF-8 percent-encoding. So does
Tollgate (:func:`lenient`): every string ``$ref`` is accepted as a reference;
only where it points decides whether it resolves.

:func:`resolve` is RFC 3986 section 5.2 for every scheme (``urljoin`` joins
only the schemes it knows, and not ``tollgate:`` or ``urn:``).
"""

from __future__ import annotations

import re
from urllib.parse import quote

# RFC 3986 appendix B.
_PARTS = re.compile(r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$", re.DOTALL)
# What RFC 3986 allows (unreserved, gen-delims but "#", sub-delims, "%"); a
# "#" is allowed once, as the fragment's start.
_ALLOWED = "A-Za-z0-9\\-._~:/?\\[\\]@!$&'()*+,;="
_CLEAN = re.compile(f"^[{_ALLOWED}]*(?:#[{_ALLOWED}]*)?$")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SAFE = "-._~:/?[]@!$&'()*+,;=%"


def lenient(reference: str) -> str:
    """``reference`` as an RFC 3986 URI reference: characters it does not
    allow percent-encoded as UTF-8 (the first ``#`` kept), a stray ``%`` as
    ``%25``. A clean reference comes back as it is."""
    if _CLEAN.match(reference) and not _BAD_PERCENT.search(reference):
        return reference
    head, hash_, fragment = reference.partition("#")
    head = quote(_BAD_PERCENT.sub("%25", head), safe=_SAFE)
    if not hash_:
        return head
    return f"{head}#{quote(_BAD_PERCENT.sub('%25', fragment), safe=_SAFE)}"


def split(uri: str) -> tuple[str | None, str | None, str, str | None, str | None]:
    """``(scheme, authority, path, query, fragment)``; absent parts are None."""
    match = _PARTS.match(uri)
    if match is None:  # unreachable: the pattern matches any string
        return None, None, uri, None, None
    scheme, authority, path, query, fragment = match.groups()
    return scheme, authority, path, query, fragment


def _unsplit(scheme: str | None, authority: str | None, path: str, query: str | None, fragment: str | None) -> str:
    text = ""
    if scheme is not None:
        text += scheme + ":"
    if authority is not None:
        text += "//" + authority
    text += path
    if query is not None:
        text += "?" + query
    if fragment is not None:
        text += "#" + fragment
    return text


def _remove_dots(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    out: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if out:
                out.pop()
        elif path == "/..":
            path = "/"
            if out:
                out.pop()
        elif path in (".", ".."):
            path = ""
        else:
            start = 1 if path.startswith("/") else 0
            end = path.find("/", start)
            end = len(path) if end < 0 else end
            out.append(path[:end])
            path = path[end:]
    return "".join(out)


def resolve(base: str | None, reference: str) -> str:
    """``reference`` resolved against ``base`` (RFC 3986 section 5.2.2);
    ``reference`` itself when there is no base, or it is absolute."""
    scheme, authority, path, query, fragment = split(reference)
    if scheme is not None:
        return _unsplit(scheme, authority, _remove_dots(path), query, fragment)
    if not base:
        return reference
    b_scheme, b_authority, b_path, b_query, _ = split(base)
    if authority is not None:
        return _unsplit(b_scheme, authority, _remove_dots(path), query, fragment)
    if path == "":
        return _unsplit(b_scheme, b_authority, b_path, query if query is not None else b_query, fragment)
    if path.startswith("/"):
        merged = path
    elif b_authority is not None and b_path == "":
        merged = "/" + path
    else:
        merged = b_path[: b_path.rfind("/") + 1] + path
    return _unsplit(b_scheme, b_authority, _remove_dots(merged), query, fragment)


def without_fragment(uri: str) -> tuple[str, str]:
    """``(uri without its fragment, the fragment or "")``."""
    head, _, fragment = uri.partition("#")
    return head, fragment


def is_absolute(uri: str) -> bool:
    return split(uri)[0] is not None
