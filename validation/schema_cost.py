"""How much work one instance value can cost a schema: refused when unbounded.

The engine evaluates a subschema once per path that reaches it. Keywords that
apply in place (``allOf``, ``anyOf``, ``oneOf``, ``not``, ``if``/``then``/
``else``, ``dependentSchemas``, ``$ref``, ``$dynamicRef``, ``$recursiveRef``)
evaluate their targets at the same instance location, so a chain of N levels
of ``{"anyOf": [{"$ref": next}, {"$ref": next}]}`` costs 2^N evaluations of one
value (20 levels in 1.4 KB held a worker for minutes). Keywords that descend
(``properties``, ``items``, ``additionalProperties``, ``contains``, …) move
to a child value, and recursion through them is what trees and linked lists
are made of: it costs once per level, unless in-place fan-out multiplies at
every level.

:func:`assess` counts, per instance location, the evaluations the schema
asks for, and follows one worst path of descents (the child that receives the
most evaluations, chosen per level) down to ``VALIDATION_MAX_DEPTH``. It raises
:class:`SchemaTooComplex` with a reason when

- a chain of in-place references loops (``a`` -> ``b`` -> ``a`` at the same
  value): unbounded by definition;
- the evaluations of one instance location exceed ``limit`` at some depth.

Counts are exact for the in-place part (paths in a DAG); the descent is one
realisable path, so the answer is a lower bound of the worst case: a schema is
refused only for work it really can cause. What this misses (a ``$dynamicRef``
resolved differently at run time, ``unevaluated*`` re-evaluating branches) is
left to the time budget of every validation (``validation.guard``).

The walk itself is bounded (``WORK_LIMIT`` node visits): a schema too large
to analyse is accepted and left to the time budget too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

# Node visits one assessment may spend (about 0.1 s of Python).
WORK_LIMIT = 300_000

_LISTS = ("allOf", "anyOf", "oneOf")
_SINGLES = ("not", "if", "then", "else")
_REFS = ("$ref", "$dynamicRef", "$recursiveRef")
_OLD_DRAFTS = ("draft4", "draft6", "draft7")
_POSITIONAL = ("prefixItems",)
_REST_ITEMS = ("additionalItems", "unevaluatedItems")
_OTHER_PROPERTIES = ("additionalProperties", "unevaluatedProperties")


class SchemaTooComplex(Exception):
    """The schema's evaluation can expand without bound; ``reason`` says where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Unbounded(Exception):
    pass


class _TooLarge(Exception):
    pass


@dataclass(eq=False)
class _Node:
    """One subschema: where it is, what it applies in place, and the
    subschemas it applies to children, by class of child."""

    where: str
    in_place: list[_Node] = field(default_factory=list)
    leaves: int = 0  # in-place targets with nothing to expand (booleans, unresolved refs)
    descents: list[tuple[str, _Node]] = field(default_factory=list)


class _Graph:
    """The subschemas of a document and the documents it references."""

    def __init__(self, document: Any, *, draft: str, base_uri: str | None, resources: dict[str, Any]) -> None:
        self.draft = draft
        self.nodes: dict[int, _Node] = {}
        self.resources: dict[str, Any] = {}
        self.anchors: dict[tuple[str, str], Any] = {}
        self.bases: dict[int, str] = {}
        self.work = 0
        self._pending: list[tuple[Any, str, str]] = []
        root_base = _strip(base_uri or "urn:tollgate:inline")
        for uri, resource in resources.items():
            self._index(resource, _strip(uri))
        self._index(document, root_base)
        self.root = self.node(document, root_base, "#")

    # -- resources, anchors and base URIs -----------------------------------
    def _id_of(self, schema: dict[str, Any]) -> Any:
        return schema.get("id") if self.draft == "draft4" else schema.get("$id")

    def _index(self, document: Any, base: str) -> None:
        """Record the resources (``$id``) and anchors of ``document``."""
        stack = [(document, base)]
        while stack:
            value, base = stack.pop()
            self.spend()
            if isinstance(value, list):
                stack.extend((item, base) for item in value)
                continue
            if not isinstance(value, dict):
                continue
            declared = self._id_of(value)
            if isinstance(declared, str) and not (self.draft in _OLD_DRAFTS and "$ref" in value):
                target = _join(base, declared)
                if "#" in declared and not declared.startswith("#/") and declared.split("#", 1)[1]:
                    self.anchors[(_strip(target), target.split("#", 1)[1])] = value  # draft 4-7 "#name" ids
                else:
                    base = _strip(target)
            self.resources.setdefault(base, value)
            self.bases[id(value)] = base
            for key in ("$anchor", "$dynamicAnchor"):
                if isinstance(value.get(key), str):
                    self.anchors[(base, value[key])] = value
            stack.extend((child, base) for key, child in value.items() if key not in ("const", "enum", "examples"))

    def spend(self, cost: int = 1) -> None:
        self.work += cost
        if self.work > WORK_LIMIT:
            raise _TooLarge()

    def _resolve(self, base: str, ref: str) -> Any:
        target = _join(base, ref)
        resource_uri, _, fragment = target.partition("#")
        resource = self.resources.get(resource_uri)
        if resource is None:
            return None
        if not fragment:
            return resource
        if not fragment.startswith("/"):
            return self.anchors.get((resource_uri, unquote(fragment)))
        value = resource
        for part in unquote(fragment).split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value

    # -- nodes ----------------------------------------------------------------
    def node(self, schema: Any, base: str, where: str) -> _Node:
        """The node of ``schema`` (built on first sight, iteratively)."""
        existing = self.nodes.get(id(schema))
        if existing is not None:
            return existing
        first = self._make(schema, base, where)
        while self._pending:
            self._fill(*self._pending.pop())
        return first

    def _make(self, schema: Any, base: str, where: str) -> _Node:
        node = _Node(where)
        self.nodes[id(schema)] = node
        self._pending.append((schema, self.bases.get(id(schema), base), where))
        return node

    def _child(self, schema: Any, base: str, where: str) -> _Node | None:
        if not isinstance(schema, dict):
            return None
        return self.nodes.get(id(schema)) or self._make(schema, base, where)

    def _fill(self, schema: dict[str, Any], base: str, where: str) -> None:
        node = self.nodes[id(schema)]
        self.spend(len(schema))
        refs_only = self.draft in _OLD_DRAFTS and "$ref" in schema  # siblings of $ref are ignored there

        def in_place(child: Any, path: str) -> None:
            target = self._child(child, base, path)
            if target is None:
                node.leaves += 1
            else:
                node.in_place.append(target)

        def descend(kind: str, child: Any, path: str) -> None:
            target = self._child(child, base, path)
            if target is not None:
                node.descents.append((kind, target))

        for key in _REFS:
            ref = schema.get(key)
            if key == "$recursiveRef" and ref is not None:
                ref = "#"
            if isinstance(ref, str):
                target = self._resolve(base, ref)
                if isinstance(target, dict):
                    in_place(target, ref[:_WHERE_CHARS])
                else:
                    node.leaves += 1
        if refs_only:
            return
        for key in _LISTS:
            if isinstance(schema.get(key), list):
                for index, child in enumerate(schema[key]):
                    in_place(child, _sub(where, f"{key}/{index}"))
        for key in _SINGLES:
            if key in schema:
                in_place(schema[key], _sub(where, key))
        for key in ("dependentSchemas", "dependencies"):
            if isinstance(schema.get(key), dict):
                for name, child in schema[key].items():
                    if isinstance(child, (dict, bool)):
                        in_place(child, _sub(where, f"{key}/{_escape(name)}"))
        self._descents(schema, where, descend)

    def _descents(self, schema: dict[str, Any], where: str, descend: Any) -> None:
        properties = schema.get("properties")
        if isinstance(properties, dict):
            for name, child in properties.items():
                descend(f"property:{name}", child, _sub(where, f"properties/{_escape(name)}"))
        patterns = schema.get("patternProperties")
        if isinstance(patterns, dict):
            for pattern, child in patterns.items():
                # A key may match a pattern and a named property too; counting
                # the pattern alone keeps the bound low (patterns are never run here).
                descend(f"pattern:{pattern}", child, _sub(where, f"patternProperties/{_escape(pattern)}"))
        for key in _OTHER_PROPERTIES:
            if key in schema:
                descend("property:*", schema[key], _sub(where, key))
        if "propertyNames" in schema:
            descend("name", schema["propertyNames"], _sub(where, "propertyNames"))
        items = schema.get("items")
        positional = next((schema[key] for key in _POSITIONAL if isinstance(schema.get(key), list)), None)
        if isinstance(items, list):
            positional = items
        elif items is not None:
            descend("item:*", items, _sub(where, "items"))
        for index, child in enumerate(positional or ()):
            descend(f"item:{index}", child, _sub(where, f"{'items' if positional is items else 'prefixItems'}/{index}"))
        for key in _REST_ITEMS:
            if key in schema:
                descend("item:*", schema[key], _sub(where, key))
        if "contains" in schema:
            for kind in ["item:*", *(f"item:{index}" for index in range(len(positional or ())))]:
                descend(kind, schema["contains"], _sub(where, "contains"))


# Characters kept of a subschema's location in messages: a 1 MB property
# name must not be copied into every location below it.
_WHERE_CHARS = 200


def _sub(where: str, part: str) -> str:
    """The location ``part`` below ``where``, cut to ``_WHERE_CHARS``."""
    if len(where) >= _WHERE_CHARS:
        return where
    path = f"{where}/{part}"
    return path if len(path) <= _WHERE_CHARS else path[:_WHERE_CHARS] + "…"


def _strip(uri: str) -> str:
    return uri.split("#", 1)[0]


def _join(base: str, ref: str) -> str:
    """RFC 3986 resolution of ``ref`` against ``base``, for any scheme."""
    if ref.startswith("#"):
        return _strip(base) + ref
    if urlsplit(ref).scheme:
        return ref
    parts = urlsplit(base)
    if parts.netloc:  # urljoin only joins the schemes it knows: borrow http's rules
        joined = urljoin("http" + base[len(parts.scheme) :], ref)
        return parts.scheme + joined[len("http") :]
    return urljoin(base, ref)


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _closure(graph: _Graph, seeds: Counter[int], nodes: dict[int, _Node]) -> tuple[int, Counter[int]]:
    """Evaluations at one instance location reached by ``seeds`` (node id ->
    times), and how often each reached node is evaluated there."""
    order: list[int] = []
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for start in seeds:
        if state.get(start):
            continue
        stack: list[tuple[int, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            current, index = stack.pop()
            children = nodes[current].in_place
            if index < len(children):
                stack.append((current, index + 1))
                child = id(children[index])
                graph.spend()
                if state.get(child) == 1:
                    raise _Unbounded(f"{nodes[current].where} -> {children[index].where}")
                if not state.get(child):
                    state[child] = 1
                    stack.append((child, 0))
            else:
                state[current] = 2
                order.append(current)
    counts: Counter[int] = Counter(seeds)
    total = 0
    for current in reversed(order):  # topological: every parent before its children
        times = counts[current]
        node = nodes[current]
        total += times * (1 + node.leaves)
        for target in node.in_place:
            counts[id(target)] += times
    return total, counts


def assess(
    document: Any, *, draft: str, base_uri: str | None, resources: dict[str, Any], limit: int, max_depth: int
) -> int:
    """The most evaluations one instance location can cost (on the path
    followed), up to ``max_depth`` levels down. Raises SchemaTooComplex."""
    if not isinstance(document, dict):
        return 1
    try:
        graph = _Graph(document, draft=draft, base_uri=base_uri, resources=resources)
        by_id = {id(node): node for node in graph.nodes.values()}
        seeds: Counter[int] = Counter({id(graph.root): 1})
        worst = 0
        for depth in range(max_depth + 1):
            total, counts = _closure(graph, seeds, by_id)
            worst = max(worst, total)
            if total > limit:
                where = by_id[next(iter(seeds))].where
                raise SchemaTooComplex(
                    f"One instance value can cost {_amount(total, limit)} subschema evaluations (at depth {depth}, "
                    f"from {where}, through in-place applicators such as anyOf/oneOf/allOf and $ref); at most "
                    f"{limit} are allowed. Factor repeated references out of anyOf/oneOf/allOf."
                )
            children: dict[str, Counter[int]] = {}
            for node_id, times in counts.items():
                for kind, child in by_id[node_id].descents:
                    children.setdefault(kind, Counter())[id(child)] += times
            if not children:
                break
            following = max(children.values(), key=lambda seed: sum(seed.values()))
            if following == seeds:
                break  # every deeper level costs the same: linear in the instance
            seeds = following
    except _Unbounded as cycle:
        raise SchemaTooComplex(
            f"The schema applies itself to the same instance value without end ({cycle}): "
            "a reference loop through $ref/allOf/anyOf/oneOf/not/if with no properties or items in between."
        ) from None
    except (_TooLarge, RecursionError):
        return -1
    return worst


def _amount(total: int, limit: int) -> str:
    return f"more than {limit * 10}" if total > limit * 10 else str(total)
