"""The schema registry: per-account, named, immutable versions.

Registered schemas reference each other by the URI
``tollgate://schemas/{name}/{version}`` (``#/…`` fragments allowed) or by the
``$id`` URIs they define (``validation.registry``: pinned at registration).
A schema is compiled with its own URI as base, so ``../other/2`` works from
``tollgate://schemas/orders/1`` too. References resolve against the caller's
account only, and only to a pinned version: ``latest`` would let one
registration change the meaning of another schema.

Several schemas may be registered at once (:func:`schemas_register`, a
bundle): in any order, referencing each other in cycles, all or nothing.

Compiled validators are cached per process: by schema row for registered
versions (immutable, so never stale) and by content for inline schemas that
resolve nothing by ``$id`` (the others follow the account's current ``$id``s).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction

from project import exactjson
from quotas.models import Account
from validation.depth import depth_message, max_schema_depth, too_deep
from validation.engine import CompiledSchema, SchemaError, compile_schema, draft_of
from validation.exceptions import (
    InvalidRequest,
    InvalidSchema,
    SchemaExists,
    SchemaIdTaken,
    SchemaNotFound,
    SchemaTooComplex,
    TooDeep,
)
from validation.models import NAME_PATTERN, VERSION_PATTERN, Schema, SchemaResource
from validation.registry import (
    INLINE_BASE,
    LATEST,
    MAX_URI_CHARS,
    URI_PREFIX,
    Pending,
    Resolver,
    defined_ids,
    prepare,
    schema_uri,
)
from validation.resources import scan
from validation.schema_cost import SchemaTooComplex as TooCostly

__all__ = ["LATEST", "URI_PREFIX", "schema_uri"]

DEFAULT_CACHE_SIZE = 512
# Schemas one bundle may register.
MAX_BUNDLE_SCHEMAS = 100

_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def _check_name(name: Any, version: Any, where: str = "") -> tuple[str, str]:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(
            "'name' must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit.",
            details={"field": f"{where}name"},
        )
    if not isinstance(version, str) or not _VERSION.fullmatch(version) or version == LATEST:
        raise InvalidRequest(
            "'version' must be 1-64 letters, digits, '.', '_', '+' or '-' (and not 'latest').",
            details={"field": f"{where}version"},
        )
    return name, version


def schema_register(*, account_id: int, name: Any, version: Any, document: Any) -> Schema:
    """Register version ``version`` of ``name``. Raises InvalidRequest (bad
    name or version), SchemaExists (409: versions are immutable),
    SchemaIdTaken (409: another name defines one of its ``$id``s),
    InvalidSchema (400: meta-schema errors or unresolvable references, all
    of them), TooDeep and SchemaTooComplex (400)."""
    return schemas_register(account_id=account_id, entries=[(name, version, document)], bundle=False)[0]


def schemas_register(*, account_id: int, entries: list[tuple[Any, Any, Any]], bundle: bool = True) -> list[Schema]:
    """Register ``(name, version, document)`` entries together, all or
    nothing: they may reference each other (and themselves) in any order and
    in cycles. Raises what :func:`schema_register` raises; in a bundle each
    error names its schema (``details.errors[].schema``, ``details.field``)."""
    if not entries:
        raise InvalidRequest("'schemas' is empty.", details={"field": "schemas"})
    if len(entries) > MAX_BUNDLE_SCHEMAS:
        raise InvalidRequest(f"At most {MAX_BUNDLE_SCHEMAS} schemas per bundle.", details={"field": "schemas"})
    pendings: list[Pending] = []
    for index, (name, version, document) in enumerate(entries):
        where = f"schemas/{index}/" if bundle else ""
        name, version = _check_name(name, version, where)
        if any(p.name == name and p.version == version for p in pendings):
            # Two versions cannot share a name and version, in a bundle or not.
            raise SchemaExists(f"{name}/{version} is in the bundle twice.", details={"schema": f"{name}/{version}"})
        schema_depth_check(document, f"{where}schema")
        if not isinstance(document, (dict, bool)):
            raise InvalidSchema("A schema must be an object or a boolean.", [_plain("A schema must be an object.")])
        pendings.append(_prepare(name, version, document, bundle))
    owners = _owners(pendings)
    with transaction.atomic():
        # Registrations of one account take turns (a row lock on PostgreSQL),
        # so that two of them cannot both claim one $id.
        list(Account.objects.select_for_update().filter(pk=account_id).values_list("pk"))
        _check_free(account_id, pendings, owners)
        compiled = _compile_pending(account_id, pendings, bundle)
        rows = _create(account_id, pendings, compiled)
    for row, (item, _) in zip(rows, compiled, strict=True):
        validators.put(("schema", row.pk), item)
    return rows


def _plain(message: str) -> dict[str, Any]:
    return {"instance_path": "", "schema_path": "", "keyword": None, "message": message}


def _prepare(name: str, version: str, document: Any, bundle: bool) -> Pending:
    try:
        return prepare(name, version, document)
    except SchemaError as exc:  # a $schema that is not a string, or draft 3
        raise InvalidSchema(_named(exc.message, name, version, bundle), exc.errors) from None


def _named(message: str, name: str, version: str, bundle: bool) -> str:
    return f"{name}/{version}: {message}" if bundle else message


def _owners(pendings: list[Pending]) -> dict[str, str]:
    """uri -> the name defining it in ``pendings``; raises SchemaIdTaken for
    a URI two names define, InvalidSchema for one no schema may define."""
    owners: dict[str, str] = {}
    for pending in pendings:
        for uri in defined_ids(pending):
            if uri.startswith(URI_PREFIX) or len(uri) > MAX_URI_CHARS:
                why = (
                    "is a tollgate:// URI, which only registration assigns (a relative $id resolves against "
                    f"{pending.uri}: give an absolute one, such as https://example.com/{pending.name}.json)"
                    if uri.startswith(URI_PREFIX)
                    else f"is longer than {MAX_URI_CHARS} characters"
                )
                message = f"{pending.name}/{pending.version}: the $id {uri[:200]} {why}."
                raise InvalidSchema(message, [{**_plain(message), "keyword": "$id"}])
            owner = owners.setdefault(uri, pending.name)
            if owner != pending.name:
                raise SchemaIdTaken(uri, owner)
    return owners


def _check_free(account_id: int, pendings: list[Pending], owners: dict[str, str]) -> None:
    if owners:
        taken = (
            SchemaResource.objects.filter(account_id=account_id, uri__in=list(owners))
            .values_list("uri", "name")
            .distinct()
        )
        for uri, name in taken:
            if owners[uri] != name:
                raise SchemaIdTaken(uri, name)
    names = {(p.name, p.version) for p in pendings}
    for pending in pendings:
        if Schema.objects.filter(account_id=account_id, name=pending.name, version=pending.version).exists():
            raise SchemaExists(details={"schema": f"{pending.name}/{pending.version}"} if len(names) > 1 else None)


def _compile_pending(
    account_id: int, pendings: list[Pending], bundle: bool
) -> list[tuple[CompiledSchema, dict[str, str]]]:
    errors: list[dict[str, Any]] = []
    resolvers = []
    for pending in pendings:
        own = f"{pending.name}/{pending.version}" if bundle else None
        resolver = Resolver(account_id, pending=pendings)
        errors += resolver.unresolved(pending.scanned, own)
        resolvers.append(resolver)
    if errors:
        count = len(errors)
        message = f"{count} reference{'s' if count > 1 else ''} cannot be resolved: {errors[0]['reference']}"
        raise InvalidSchema(message + (" and more." if count > 1 else "."), errors)
    compiled = []
    for pending, resolver in zip(pendings, resolvers, strict=True):
        try:
            item = _compile(pending.document, resolve=resolver, base_uri=pending.uri)
        except InvalidSchema as exc:
            if bundle:
                exc.message = _named(exc.message, pending.name, pending.version, bundle)
                for error in exc.details["errors"]:
                    error["schema"] = f"{pending.name}/{pending.version}"
            raise
        compiled.append((item, resolver.pinned))
    return compiled


def _create(
    account_id: int, pendings: list[Pending], compiled: list[tuple[CompiledSchema, dict[str, str]]]
) -> list[Schema]:
    rows = []
    try:
        with transaction.atomic():
            for pending, (item, pins) in zip(pendings, compiled, strict=True):
                row = Schema.objects.create(
                    account_id=account_id,
                    name=pending.name,
                    version=pending.version,
                    document=exactjson.dumps(pending.document).decode(),
                    draft=item.draft,
                    pins=pins,
                )
                SchemaResource.objects.bulk_create(
                    SchemaResource(account_id=account_id, uri=uri, name=pending.name, schema=row, pointer=where)
                    for uri, where in defined_ids(pending).items()
                )
                rows.append(row)
    except IntegrityError:
        raise SchemaExists() from None  # registered concurrently
    return rows


def schema_get(*, account_id: int, name: str, version: str) -> Schema:
    """The account's ``name/version`` (``latest``: the most recently
    registered). Raises SchemaNotFound."""
    if not _NAME.fullmatch(name) or not (version == LATEST or _VERSION.fullmatch(version)):
        # No such name can be registered (and a NUL byte would not even
        # reach PostgreSQL): not found, without a query.
        raise SchemaNotFound(f"No schema {name!r}/{version!r} in this account.")
    rows = Schema.objects.filter(account_id=account_id, name=name)
    row = rows.order_by("-created_at", "-id").first() if version == LATEST else rows.filter(version=version).first()
    if row is None:
        raise SchemaNotFound(f"No schema {name}/{version} in this account.")
    return row


def schema_lookup(*, account_id: int, reference: str) -> Schema:
    """``name/version`` or ``name/latest`` (a bare ``name`` means latest)."""
    name, _, version = reference.partition("/")
    if not name or "/" in version:
        raise InvalidRequest("'schema' must be 'name/version', 'name/latest' or an inline schema.")
    return schema_get(account_id=account_id, name=name, version=version or LATEST)


def schema_depth_check(document: Any, field: str = "schema") -> None:
    """Raises TooDeep (400) for a schema nested deeper than
    ``VALIDATION_MAX_SCHEMA_DEPTH`` JSON levels."""
    limit = max_schema_depth()
    if too_deep(document, limit):
        raise TooDeep(depth_message(limit, "The schema"), details={"field": field, "max_depth": limit})


def _compile(document: Any, *, resolve: Resolver, base_uri: str | None) -> CompiledSchema:
    try:
        return compile_schema(document, resolve=resolve, base_uri=base_uri)
    except SchemaError as exc:
        raise InvalidSchema(exc.message, exc.errors) from None
    except TooCostly as exc:
        raise SchemaTooComplex(exc.reason) from None


class _Cache:
    """A small thread-safe LRU of compiled validators."""

    def __init__(self) -> None:
        self._items: OrderedDict[Any, CompiledSchema] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> CompiledSchema | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Any, value: CompiledSchema) -> None:
        size = int(getattr(settings, "VALIDATION_VALIDATOR_CACHE_SIZE", DEFAULT_CACHE_SIZE))
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


validators = _Cache()


def schema_validator(*, schema: Schema) -> CompiledSchema:
    """The compiled validator of a registered version, cached by row; its
    references by ``$id`` follow its pins."""
    key = ("schema", schema.pk)
    compiled = validators.get(key)
    if compiled is None:
        document = exactjson.loads(schema.document)
        schema_depth_check(document)  # today's limit, whatever it was at registration
        resolver = Resolver(schema.account_id, pins=dict(schema.pins or {}))
        compiled = _compile(document, resolve=resolver, base_uri=schema_uri(schema.name, schema.version))
        validators.put(key, compiled)
    return compiled


def inline_validator(*, account_id: int, document: Any) -> CompiledSchema:
    """The compiled validator of an inline schema (which may reference the
    account's registered schemas, by URI or ``$id``), cached by its canonical
    JSON unless it resolved an ``$id``. Raises InvalidSchema listing every
    reference that cannot resolve."""
    schema_depth_check(document)
    digest = hashlib.sha256(exactjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
    key = ("inline", account_id, digest)
    compiled = validators.get(key)
    if compiled is None:
        resolver = Resolver(account_id)
        if isinstance(document, dict):
            try:
                scanned = scan(document, base_uri=INLINE_BASE, draft=draft_of(document))
            except SchemaError as exc:
                raise InvalidSchema(exc.message, exc.errors) from None
            errors = resolver.unresolved(scanned)
            if errors:
                raise InvalidSchema(errors[0]["message"], errors)
        compiled = _compile(document, resolve=resolver, base_uri=None)
        if not resolver.pinned:
            validators.put(key, compiled)
    return compiled
