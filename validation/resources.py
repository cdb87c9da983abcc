"""What a schema document identifies and what it references, read without
the engine.

:func:`scan` walks the subschemas of a document (the keywords that hold
schemas; ``const``, ``enum``, ``default`` and ``examples`` hold data and are
never read) tracking the base URI through ``$id`` (``id`` in draft 4) and
returns a :class:`Scan`:

- ``ids``: the absolute URIs (without fragment) the document defines, root
  and embedded resources, each with the JSON Pointer of its subschema;
- ``anchors``: the plain-name fragments it defines, as ``uri#name``
  (``$anchor``, ``$dynamicAnchor``, a draft 6/7 ``$id`` of ``#name``);
- ``refs``: every ``$ref``, with the pointer of the ``$ref`` keyword and the
  absolute URI it names;
- ``document``: the document as the engine gets it: each ``$ref`` and
  ``$id`` read leniently (``validation.uris.lenient``), otherwise the same
  objects (a document needing no change comes back as it is).

The registry (``validation.registry``) uses it to index ``$id``s and to
report every unresolvable reference at once, where the engine stops at the
first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from validation.uris import lenient, resolve, without_fragment

_SINGLE = (
    "additionalItems",
    "additionalProperties",
    "contains",
    "contentSchema",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAPS = ("$defs", "definitions", "dependentSchemas", "dependencies", "patternProperties", "properties")
# Steps one scan may take: far above real schemas (thousands of subschemas),
# and what the depth limit of a registered schema bounds anyway.
WORK_LIMIT = 1_000_000


@dataclass
class Scan:
    document: Any
    ids: dict[str, str] = field(default_factory=dict)
    anchors: set[str] = field(default_factory=set)
    refs: list[tuple[str, str]] = field(default_factory=list)


def _escape(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def scan(document: Any, *, base_uri: str | None, draft: str) -> Scan:
    """The :class:`Scan` of ``document`` read with ``base_uri`` as its
    retrieval URI (None: an inline schema) under ``draft``."""
    id_key = "id" if draft == "draft4" else "$id"
    result = Scan(document)
    work = [0]

    def visit(node: Any, base: str | None, where: str) -> Any:
        work[0] += 1
        if not isinstance(node, dict) or work[0] > WORK_LIMIT:
            return node
        changed: dict[str, Any] = {}
        identifier = node.get(id_key)
        if isinstance(identifier, str):
            clean = lenient(identifier)
            if clean != identifier:
                changed[id_key] = clean
            target, fragment = without_fragment(resolve(base, clean))
            if clean.startswith("#") and draft in ("draft4", "draft6", "draft7"):
                if fragment and base:
                    result.anchors.add(f"{base}#{fragment}")  # a location-independent identifier
            elif target:
                base = target
                result.ids.setdefault(target, where)
        for key in ("$anchor", "$dynamicAnchor"):
            anchor = node.get(key)
            if isinstance(anchor, str) and base:
                result.anchors.add(f"{base}#{anchor}")
        reference = node.get("$ref")
        if isinstance(reference, str):
            clean = lenient(reference)
            if clean != reference:
                changed["$ref"] = clean
            result.refs.append((f"{where}/$ref", resolve(base, clean)))
        for key, value in node.items():
            inner = f"{where}/{_escape(key)}"
            if key in _MAPS and isinstance(value, dict):
                new = {name: visit(sub, base, f"{inner}/{_escape(name)}") for name, sub in value.items()}
                if any(new[name] is not value[name] for name in value):
                    changed[key] = new
            elif key in _LISTS and isinstance(value, list):
                items = [visit(sub, base, f"{inner}/{index}") for index, sub in enumerate(value)]
                if any(a is not b for a, b in zip(items, value, strict=True)):
                    changed[key] = items
            elif key in _SINGLE and isinstance(value, dict):
                new_value = visit(value, base, inner)
                if new_value is not value:
                    changed[key] = new_value
        return {**node, **changed} if changed else node

    root_base = base_uri
    if base_uri:
        result.ids[base_uri] = ""
    result.document = visit(document, root_base, "")
    return result


def at_pointer(document: Any, fragment: str) -> tuple[bool, Any]:
    """``(found, value)`` of a JSON Pointer fragment (percent-decoded) in ``document``."""
    if fragment == "":
        return True, document
    if not fragment.startswith("/"):
        return False, None
    node = document
    for part in unquote(fragment)[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node
