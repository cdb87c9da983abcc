"""Resolution of references inside an account: by ``tollgate://`` URI and by ``$id``.

A registered schema is found by ``tollgate://schemas/{name}/{version}`` and
by every ``$id`` it defines (its root's, and those embedded in ``$defs`` or
anywhere in its subschemas), indexed in :class:`~validation.models.SchemaResource`.
Nothing is ever fetched from the network or the filesystem, and another
account's ``$id`` never resolves.

- One name owns a URI: registering another name with a URI already defined
  raises ``SchemaIdTaken`` (409 ``schema_id_taken``). A new version of the
  same name may define it again.
- A reference by ``$id`` is pinned when the referencing schema is
  registered: to the version that then defined the URI most recently
  (``Schema.pins``, ``{uri: "name/version"}``, shown in the API). A later
  version never changes what a registered schema means.
- Before the engine sees a schema, every ``$ref`` in it is checked
  (:meth:`Resolver.unresolved`): all that cannot resolve are reported at
  once, each with the JSON Pointer of its ``$ref``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from project import exactjson
from validation.engine import draft_of
from validation.models import NAME_PATTERN, VERSION_PATTERN, Schema, SchemaResource
from validation.resources import Scan, at_pointer, scan
from validation.uris import is_absolute, without_fragment

URI_PREFIX = "tollgate://schemas/"
LATEST = "latest"
# The base of a schema that has none (an inline schema): the engine's own.
INLINE_BASE = "json-schema:///"
# The longest URI a schema may define with $id (an index key).
MAX_URI_CHARS = 2048
_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)
# Meta-schemas built into the engine: resolvable without the registry.
_BUILT_IN = ("http://json-schema.org/", "https://json-schema.org/")


def schema_uri(name: str, version: str) -> str:
    return f"{URI_PREFIX}{name}/{version}"


def parse_tollgate_uri(uri: str) -> tuple[str, str] | None:
    """``(name, version)`` of a ``tollgate://schemas/name/version`` URI, else None."""
    parts = urlsplit(uri)
    if f"{parts.scheme}://{parts.netloc}/" != URI_PREFIX or parts.query:
        return None
    segments = unquote(parts.path).strip("/").split("/")
    if len(segments) != 2:
        return None
    return segments[0], segments[1]


@dataclass
class Resource:
    """A document found for a URI: the whole document it belongs to (as
    scanned), the pointer of the resource in it, and who registered it."""

    scanned: Scan
    pointer: str
    name: str
    version: str
    draft: str

    @property
    def contents(self) -> Any:
        return at_pointer(self.scanned.document, self.pointer)[1]

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass
class Pending:
    """A schema about to be registered (one of a bundle)."""

    name: str
    version: str
    document: Any
    draft: str
    scanned: Scan

    @property
    def uri(self) -> str:
        return schema_uri(self.name, self.version)


def prepare(name: str, version: str, document: Any) -> Pending:
    """Scan ``document`` as ``name/version`` will be registered."""
    draft = draft_of(document)
    return Pending(name, version, document, draft, scan(document, base_uri=schema_uri(name, version), draft=draft))


def defined_ids(pending: Pending) -> dict[str, str]:
    """The URIs ``pending`` defines by ``$id`` (uri -> pointer), its own
    ``tollgate://`` URI aside."""
    return {uri: where for uri, where in pending.scanned.ids.items() if uri != pending.uri}


@dataclass
class Resolver:
    """Finds the documents an account's schema references.

    ``pins`` (a registered schema's) are followed first and exclusively for
    ``$id`` URIs; without pins the current definition is taken and pinned in
    :attr:`pinned`. ``pending`` are schemas being registered together."""

    account_id: int
    pins: dict[str, str] | None = None
    pending: list[Pending] = field(default_factory=list)
    pinned: dict[str, str] = field(default_factory=dict)
    _found: dict[str, Resource | None] = field(default_factory=dict)
    _rows: dict[tuple[str, str], Resource | None] = field(default_factory=dict)

    def _row(self, name: str, version: str, pointer: str = "") -> Resource | None:
        key = (name, version)
        if not _NAME.fullmatch(name) or not _VERSION.fullmatch(version):
            return None  # no such name can be registered (and a NUL byte must not reach PostgreSQL)
        if key not in self._rows:
            row = Schema.objects.filter(account_id=self.account_id, name=name, version=version).first()
            if row is None:
                self._rows[key] = None
            else:
                document = exactjson.loads(row.document)
                draft = draft_of(document)
                scanned = scan(document, base_uri=schema_uri(name, version), draft=draft)
                self._rows[key] = Resource(scanned, "", name, version, draft)
        found = self._rows[key]
        if found is None:
            return None
        return Resource(found.scanned, pointer, name, version, found.draft)

    def _pending_resource(self, uri: str) -> Resource | None:
        for pending in self.pending:
            where = pending.scanned.ids.get(uri)
            if where is not None:
                return Resource(pending.scanned, where, pending.name, pending.version, pending.draft)
        return None

    def find(self, uri: str) -> Resource | None:
        """The resource ``uri`` (absolute, no fragment) names, or None."""
        if uri in self._found:
            return self._found[uri]
        found = self._find(uri)
        self._found[uri] = found
        return found

    def _find(self, uri: str) -> Resource | None:
        found = self._pending_resource(uri)
        if found is not None:
            if not uri.startswith(URI_PREFIX):
                self.pinned[uri] = found.label
            return found
        parsed = parse_tollgate_uri(uri)
        if parsed is not None:
            return None if parsed[1] == LATEST else self._row(*parsed)
        if self.pins is not None:
            label = self.pins.get(uri)
            if label is None:
                return None
            name, _, version = label.partition("/")
            row = SchemaResource.objects.filter(
                account_id=self.account_id, uri=uri, schema__name=name, schema__version=version
            ).first()
            return self._row(name, version, row.pointer) if row is not None else None
        if len(uri) > MAX_URI_CHARS:
            return None
        row = (
            SchemaResource.objects.filter(account_id=self.account_id, uri=uri)
            .select_related("schema")
            .order_by("-schema__created_at", "-schema__id")
            .first()
        )
        if row is None:
            return None
        self.pinned[uri] = f"{row.schema.name}/{row.schema.version}"
        return self._row(row.schema.name, row.schema.version, row.pointer)

    def __call__(self, uri: str) -> Any:
        """The engine's ``resolve``: the document for ``uri``, or None."""
        found = self.find(without_fragment(uri)[0])
        return found.contents if found is not None else None

    def unresolved(self, scanned: Scan, own: str | None = None) -> list[dict[str, Any]]:
        """An error for each ``$ref`` of ``scanned`` that cannot resolve:
        its target is unknown, or names a location or anchor it lacks."""
        errors: list[dict[str, Any]] = []
        for where, target in scanned.refs:
            uri, fragment = without_fragment(target)
            if uri in scanned.ids:
                document, pointer, anchors = scanned.document, scanned.ids[uri], scanned.anchors
            elif uri.startswith(_BUILT_IN) and parse_tollgate_uri(uri) is None:
                continue  # the engine's meta-schemas (or refused by it)
            else:
                found = self.find(uri) if is_absolute(uri) else None
                if found is None:
                    errors.append(_unresolved(where, target, "no schema of this account has this URI", own))
                    continue
                document, pointer, anchors = found.scanned.document, found.pointer, found.scanned.anchors
            if fragment.startswith("/"):
                base_found, base = at_pointer(document, pointer)
                if not base_found or not at_pointer(base, fragment)[0]:
                    errors.append(_unresolved(where, target, f"nothing is at {unquote(fragment)}", own))
            elif fragment and f"{uri}#{fragment}" not in anchors:
                errors.append(_unresolved(where, target, f"no anchor {fragment!r} is defined there", own))
        return errors


def _unresolved(where: str, target: str, why: str, own: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "instance_path": "",
        "schema_path": where,
        "keyword": "$ref",
        "code": "unresolved_reference",
        "reference": target,
        "message": f"The reference {target} cannot be resolved: {why}.",
    }
    if own is not None:
        error["schema"] = own
    return error
