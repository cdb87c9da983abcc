"""The schema registry: per-account, named, immutable versions.

Registered schemas reference each other by the URI
``tollgate://schemas/{name}/{version}`` (``#/…`` fragments allowed). A
schema is compiled with its own URI as base, so ``../other/2`` works from
``tollgate://schemas/orders/1`` too. References resolve against the caller's
account only, and only to a pinned version: ``latest`` would let one
registration change the meaning of another schema.

Compiled validators are cached per process: by schema row for registered
versions (immutable, so never stale) and by content for inline schemas.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction

from validation.depth import depth_message, max_schema_depth, too_deep
from validation.engine import CompiledSchema, SchemaError, compile_schema
from validation.exceptions import InvalidRequest, InvalidSchema, SchemaExists, SchemaNotFound, SchemaTooComplex, TooDeep
from validation.models import NAME_PATTERN, VERSION_PATTERN, Schema
from validation.schema_cost import SchemaTooComplex as TooCostly

URI_PREFIX = "tollgate://schemas/"
LATEST = "latest"
DEFAULT_CACHE_SIZE = 512

_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)


def schema_uri(name: str, version: str) -> str:
    return f"{URI_PREFIX}{name}/{version}"


def _parse_uri(uri: str) -> tuple[str, str] | None:
    parts = urlsplit(uri)
    if f"{parts.scheme}://{parts.netloc}/" != URI_PREFIX or parts.query:
        return None
    segments = unquote(parts.path).strip("/").split("/")
    if len(segments) != 2:
        return None
    return segments[0], segments[1]


def account_resolver(account_id: int) -> Callable[[str], Any]:
    """The engine's resolver for ``account_id``: a pinned version of one of
    its registered schemas, or None (refused) for any other URI."""

    def resolve(uri: str) -> Any:
        parsed = _parse_uri(uri)
        if parsed is None or parsed[1] == LATEST:
            return None
        if not _NAME.fullmatch(parsed[0]) or not _VERSION.fullmatch(parsed[1]):
            return None
        row = Schema.objects.filter(account_id=account_id, name=parsed[0], version=parsed[1]).first()
        return orjson.loads(row.document) if row is not None else None

    return resolve


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def _check_name(name: Any, version: Any) -> tuple[str, str]:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(
            "'name' must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit.",
            details={"field": "name"},
        )
    if not isinstance(version, str) or not _VERSION.fullmatch(version) or version == LATEST:
        raise InvalidRequest(
            "'version' must be 1-64 letters, digits, '.', '_', '+' or '-' (and not 'latest').",
            details={"field": "version"},
        )
    return name, version


def schema_register(*, account_id: int, name: Any, version: Any, document: Any) -> Schema:
    """Register version ``version`` of ``name``. Raises InvalidRequest (bad
    name or version), SchemaExists (409: versions are immutable),
    InvalidSchema (400: meta-schema errors or a refused reference), TooDeep
    and SchemaTooComplex (400)."""
    name, version = _check_name(name, version)
    if Schema.objects.filter(account_id=account_id, name=name, version=version).exists():
        raise SchemaExists()
    compiled = _compile(document, account_id=account_id, base_uri=schema_uri(name, version))
    try:
        with transaction.atomic():
            schema = Schema.objects.create(
                account_id=account_id,
                name=name,
                version=version,
                document=orjson.dumps(document).decode(),
                draft=compiled.draft,
            )
    except IntegrityError:
        raise SchemaExists() from None  # registered concurrently
    validators.put(("schema", schema.pk), compiled)
    return schema


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


def _compile(document: Any, *, account_id: int, base_uri: str | None) -> CompiledSchema:
    schema_depth_check(document)
    try:
        return compile_schema(document, resolve=account_resolver(account_id), base_uri=base_uri)
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
    """The compiled validator of a registered version, cached by row."""
    key = ("schema", schema.pk)
    compiled = validators.get(key)
    if compiled is None:
        document = orjson.loads(schema.document)
        compiled = _compile(document, account_id=schema.account_id, base_uri=schema_uri(schema.name, schema.version))
        validators.put(key, compiled)
    return compiled


def inline_validator(*, account_id: int, document: Any) -> CompiledSchema:
    """The compiled validator of an inline schema (which may reference the
    account's registered schemas), cached by its canonical JSON."""
    schema_depth_check(document)
    digest = hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
    key = ("inline", account_id, digest)
    compiled = validators.get(key)
    if compiled is None:
        compiled = _compile(document, account_id=account_id, base_uri=None)
        validators.put(key, compiled)
    return compiled
