"""A registered schema with its dependencies embedded: one document any
validator can use offline (the 2020-12 bundling rules, "Bundling" in the
core specification, section 9.3).

Every schema resource the root references, directly or through another, is
embedded whole under the root's ``$defs`` (``definitions`` before 2019-09),
keyed by its canonical URI, with that URI as its ``$id`` (``id`` in draft 4)
and its ``$schema`` where its draft differs from the root's. References are
left as they are: they resolve to the embedded resources by their ``$id``s.
The root gets its own ``$id`` (its ``tollgate://`` URI) when it has none, so
that relative references keep their meaning. A resource referenced by its
``tollgate://`` URI and defining another ``$id`` is embedded under its ``$id``,
with an alias under the ``tollgate://`` URI that refers to it.

References by ``$id`` follow the root's pins (``validation.registry``), so the
bundle means exactly what the registered schema means.
"""

from __future__ import annotations

from typing import Any

from validation.engine import DRAFTS
from validation.models import Schema
from validation.registry import URI_PREFIX, Resolver, Resource, schema_uri
from validation.resources import Scan
from validation.uris import without_fragment

_META = {name: uri for uri, name in DRAFTS.items()}


def _id_key(draft: str) -> str:
    return "id" if draft == "draft4" else "$id"


def _container(draft: str) -> str:
    return "definitions" if draft in ("draft4", "draft6", "draft7") else "$defs"


def _canonical(scanned: Scan, tollgate: str) -> str:
    """The URI a document's root names itself by: its own ``$id``, else its tollgate URI."""
    for uri, where in scanned.ids.items():
        if where == "" and uri != tollgate:
            return uri
    return tollgate


def _meta(draft: str) -> str:
    return _META[draft] + ("#" if draft.startswith("draft") else "")


def schema_bundle(*, schema: Schema) -> Any:
    """The bundled document of the registered ``schema``."""
    resolver = Resolver(schema.account_id, pins=dict(schema.pins or {}))
    root = resolver.find(schema_uri(schema.name, schema.version))
    if root is None or not isinstance(root.scanned.document, dict):
        return root.scanned.document if root is not None else None
    done = {root.label}
    embedded: list[Resource] = []
    aliases: dict[str, str] = {}
    queue = [root]
    while queue:
        current = queue.pop(0)
        for _where, target in current.scanned.refs:
            uri = without_fragment(target)[0]
            if uri in current.scanned.ids:
                continue
            found = resolver.find(uri)
            if found is None:
                continue  # a meta-schema built into every validator
            tollgate = schema_uri(found.name, found.version)
            if uri.startswith(URI_PREFIX) and _canonical(found.scanned, tollgate) != tollgate:
                aliases[tollgate] = _canonical(found.scanned, tollgate)
            if found.label in done:
                continue
            done.add(found.label)
            embedded.append(found)
            queue.append(found)
    document = dict(root.scanned.document)
    root_tollgate = schema_uri(schema.name, schema.version)
    id_key = _id_key(root.draft)
    document[id_key] = _canonical(root.scanned, root_tollgate)
    if not embedded and not aliases:
        return {id_key: document.pop(id_key), **document}
    container = _container(root.draft)
    inner = dict(document.get(container) or {}) if isinstance(document.get(container), dict) else {}
    for resource in embedded:
        tollgate = schema_uri(resource.name, resource.version)
        canonical = _canonical(resource.scanned, tollgate)
        contents = resource.scanned.document
        if isinstance(contents, bool):
            contents = {"allOf": [contents]}
        entry = {
            _id_key(resource.draft): canonical,
            **{k: v for k, v in contents.items() if k != _id_key(resource.draft)},
        }
        if resource.draft != root.draft:
            entry = {"$schema": _meta(resource.draft), **entry}
        inner[canonical] = entry
    for tollgate, canonical in aliases.items():
        if tollgate != document[id_key]:
            inner[tollgate] = {id_key: tollgate, "allOf": [{"$ref": canonical}]}
    document[container] = inner
    return {id_key: document.pop(id_key), **document}
