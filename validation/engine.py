"""The validation engine: the only module that imports jsonschema-rs.

Everything else compiles schemas and validates instances through
:func:`compile_schema` and :class:`CompiledSchema`, so the engine's options
(draft detection, format assertion, no remote references, regex limits) are
set once, here.

Contracts:

- Drafts 4, 6, 7, 2019-09 and 2020-12 are chosen by ``$schema``; a schema
  without ``$schema`` is 2020-12. A ``$schema`` that names none of them is a
  custom meta-schema and must be resolvable like any ``$ref``.
- ``format`` is asserted (an invalid e-mail is an error), in every draft.
- ``$ref`` and ``$id`` are read leniently (``validation.uris.lenient``):
  characters RFC 3986 does not allow are percent-encoded, as other
  validators read them; no string reference is refused for its spelling.
- A reference that the document itself does not contain is passed to the
  caller's ``resolve`` function, which returns a schema or ``None``. ``None``
  is a refusal: nothing is ever fetched from the network or the filesystem.
- ``pattern`` regexes run with a backtracking limit: a catastrophic pattern
  fails the instance (``keyword`` ``pattern``) instead of hanging a worker.
- Instances nested deeper than ``VALIDATION_MAX_DEPTH`` are not given to the
  engine (``validation.depth``); callers report them as ``too_deep``.
- A schema whose evaluation can expand without bound is refused at compile
  time (``validation.schema_cost``), and every error is bounded
  (``validation.bounds``) as it is described.
- A :class:`CompiledSchema` keeps its :class:`SchemaSource`: what it was
  compiled from, references included, so that another process (the guard's
  child, ``validation.guard``) can compile the same schema without a database.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import orjson
from django.conf import settings

from project import exactjson
from validation.bounds import MAX_ERRORS_PER_INSTANCE, MESSAGE_CHARS, VALUE_CHARS, bound_error, clip
from validation.depth import depth_message, max_depth
from validation.outputs import branches, params, standard
from validation.resources import scan
from validation.schema_cost import assess

# $schema URIs of the supported drafts, without the optional trailing "#".
DRAFTS = {
    "http://json-schema.org/draft-04/schema": "draft4",
    "http://json-schema.org/draft-06/schema": "draft6",
    "http://json-schema.org/draft-07/schema": "draft7",
    "https://json-schema.org/draft/2019-09/schema": "2019-09",
    "https://json-schema.org/draft/2020-12/schema": "2020-12",
}
DEFAULT_DRAFT = "2020-12"
# The base URI of a schema that has none (an inline one): the engine's own.
ENGINE_BASE = "json-schema:///"
UNSUPPORTED_DRAFTS = ("http://json-schema.org/draft-03/schema", "http://json-schema.org/draft-02/schema")
# Steps the backtracking regex engine may take per match: about a
# millisecond of work, far above any sane pattern on a sane string, far
# below what a catastrophic pattern (^(a|a)*$ on "aaaa…!") would burn.
DEFAULT_BACKTRACK_LIMIT = 100_000
# Subschema evaluations one instance value may cost (validation.schema_cost).
# Real schemas need tens, large unions a few thousand; 2^15 is where a
# fan-out chain starts to cost the errors path a tenth of a second per value.
DEFAULT_SCHEMA_COST_LIMIT = 25_000

# The engine names each error by the keyword that failed, except where one
# kind serves several keywords: those are told apart by the schema path.
_SHARED_KINDS = {
    "required": ("dependentRequired", "dependencies"),
    "contains": ("minContains", "maxContains"),
}
# A `false` subschema under these keywords is reported as the keyword
# (`items: false` rejects extra items); elsewhere (a property, a definition)
# as "false".
_FALSE_UNDER = ("items", "additionalItems", "additionalProperties", "unevaluatedItems", "unevaluatedProperties", "not")
_NAMING_CONTAINERS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies")

Resolve = Callable[[str], Any]


class SchemaError(Exception):
    """The schema cannot be compiled. ``errors`` lists what is wrong, each
    an error dict (see :func:`describe`); ``message`` sums it up."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        message = clip(message)
        super().__init__(message)
        self.message = message
        self.errors = [bound_error(error) for error in errors]


class ReferenceRefused(Exception):
    """Raised by a resolver for a reference it will not serve."""


def draft_of(schema: Any) -> str:
    """The draft name of ``schema`` (``draft4`` … ``2020-12``), ``custom``
    for a ``$schema`` naming another meta-schema. Raises SchemaError for a
    non-string ``$schema`` or for drafts older than 4."""
    if not isinstance(schema, dict) or "$schema" not in schema:
        return DEFAULT_DRAFT
    uri = schema["$schema"]
    if not isinstance(uri, str):
        raise SchemaError("$schema must be a string.", [_plain_error("$schema", "$schema must be a string")])
    normalized = uri.rstrip("#")
    if normalized in UNSUPPORTED_DRAFTS:
        message = f"{uri} is not supported; use draft 4, 6, 7, 2019-09 or 2020-12."
        raise SchemaError(message, [_plain_error("$schema", message)])
    return DRAFTS.get(normalized, "custom")


def pointer(path: Any) -> str:
    """A JSON Pointer (RFC 6901) from a list of keys and indexes."""
    if not path:
        return ""
    text = "/".join(map(str, path))
    if "~" not in text and text.count("/") == len(path) - 1:
        return "/" + text  # no key holds "~" or "/": nothing to escape
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def keyword_of(kind: str, schema_path: list[Any]) -> str:
    """The JSON Schema keyword of an error of ``kind`` at ``schema_path``."""
    last = schema_path[-1] if schema_path else None
    if kind in _SHARED_KINDS and last in _SHARED_KINDS[kind]:
        return str(last)
    if kind == "falseSchema":
        parent = schema_path[-2] if len(schema_path) > 1 else None
        return str(last) if last in _FALSE_UNDER and parent not in _NAMING_CONTAINERS else "false"
    return kind


def describe(error: Any, base: str | None = None, nested: bool = False) -> dict[str, Any]:
    """One engine error as data: instance_path, schema_path (the keyword's
    location as evaluated, through ``$ref``), keyword_location (the
    keyword's absolute URI), keyword, message and params (machine-readable,
    ``validation.outputs.params``); for ``anyOf``/``oneOf`` also
    ``branches``, why each branch failed (not below a branch). Each string
    is cut to its bound (``validation.bounds``); a message quotes at most a
    bounded prefix of the failing value."""
    schema_path = list(error.evaluation_path)
    location = error.absolute_keyword_location or f"{base or ENGINE_BASE}#{pointer(list(error.schema_path))}"
    described: dict[str, Any] = {
        "instance_path": pointer(error.instance_path),
        "schema_path": pointer(schema_path),
        "keyword_location": location,
        "keyword": keyword_of(error.kind.name, schema_path),
        "message": _message(error),
        "params": params(error.kind),
    }
    if not nested:
        found = branches(error.kind, lambda inner, nested: describe(inner, base, nested))
        if found is not None:
            described["branches"] = found
    return bound_error(described)


def _message(error: Any) -> str:
    """The engine's message, the failing value in it cut to a prefix."""
    message = str(error.message)
    if len(message) <= MESSAGE_CHARS:
        return message
    try:
        text = exactjson.dumps(error.instance).decode()
    except (TypeError, ValueError):
        return message
    if len(text) > VALUE_CHARS and text in message:
        return message.replace(text, clip(text, VALUE_CHARS), 1)
    return message


def _plain_error(keyword: str | None, message: str) -> dict[str, Any]:
    return {"instance_path": "", "schema_path": "", "keyword": keyword, "message": message}


def record_error(code: str, message: str) -> dict[str, Any]:
    """An error about a record that never reached the schema (malformed
    JSON, too deep, a broken CSV row): the same keys as a schema error, plus
    a machine ``code``, with ``keyword`` null."""
    return {"instance_path": "", "schema_path": "", "keyword": None, "code": code, "message": message}


def depth_error(limit: int) -> dict[str, Any]:
    return record_error("too_deep", depth_message(limit))


@dataclass(frozen=True, slots=True)
class SchemaSource:
    """What a schema was compiled from: the document, its base URI, every
    document its references resolved to (uri -> document) and the engine's
    options. Plain data: it crosses a process boundary as it is."""

    document: Any
    base_uri: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    format_assertion: bool = True
    backtrack_limit: int = DEFAULT_BACKTRACK_LIMIT

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.document, self.base_uri, self.resources, self.format_assertion, self.backtrack_limit)


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A compiled schema. ``is_valid`` is the fast path; ``errors`` is for
    the instances that failed it."""

    validator: Any
    draft: str
    source: SchemaSource
    # Names this schema in a guard's child (validation.guard): equal sources, equal keys.
    key: str = ""

    def is_valid(self, instance: Any) -> bool:
        return bool(self.validator.is_valid(instance))

    def errors(self, instance: Any, limit: int = MAX_ERRORS_PER_INSTANCE) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` errors of ``instance`` and whether there were more."""
        found: list[dict[str, Any]] = []
        for error in self.validator.iter_errors(instance):
            if len(found) == limit:
                return found, True
            found.append(describe(error, self.source.base_uri))
        return found, False

    def output(self, instance: Any, output: str) -> dict[str, Any]:
        """The specification's ``output`` format (flag, basic, detailed) of
        ``instance`` (``validation.outputs.standard``)."""
        return standard(self.validator, instance, output, self.source.base_uri or ENGINE_BASE)

    def check(self, instance: Any) -> tuple[bool, list[dict[str, Any]], bool]:
        """``(valid, errors, truncated)`` for one parsed instance (its depth
        checked already)."""
        if self.is_valid(instance):
            return True, [], False
        errors, truncated = self.errors(instance)
        return False, errors, truncated


def _options(source: SchemaSource) -> dict[str, Any]:
    options: dict[str, Any] = {
        "validate_formats": source.format_assertion,
        "pattern_options": jsonschema_rs.FancyRegexOptions(backtrack_limit=source.backtrack_limit),
    }
    if source.base_uri is not None:
        options["base_uri"] = source.base_uri
    return options


def compile_source(source: SchemaSource) -> CompiledSchema:
    """Compile a source that compiled before (in another process): its
    references come from ``source.resources`` only, and it is not assessed
    again. Raises SchemaError if it does not compile after all."""
    resources = source.resources

    def retrieve(uri: str) -> Any:
        if uri not in resources:
            raise ValueError(f"reference to {uri} refused")
        return resources[uri]

    try:
        validator = jsonschema_rs.validator_for(source.document, retriever=retrieve, **_options(source))
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        raise SchemaError(str(exc).splitlines()[0], []) from None
    return CompiledSchema(validator, draft_of(source.document), source)


def compile_schema(
    schema: Any, *, resolve: Resolve, base_uri: str | None = None, format_assertion: bool = True
) -> CompiledSchema:
    """Compile ``schema``. References outside the document go to ``resolve``
    (uri → schema, or None to refuse). ``format_assertion`` is on for every
    production path; the conformance test turns it off only to check the
    specification's own default. Raises SchemaError with the meta-schema's
    errors, or with the refused reference; SchemaTooComplex when its
    evaluation can expand without bound (``validation.schema_cost``)."""
    if not isinstance(schema, (dict, bool)):
        raise SchemaError("A schema must be an object or a boolean.", [_plain_error("type", "not an object")])
    draft = draft_of(schema)
    # Every $ref and $id read leniently (validation.uris): "#/$defs/a<b" is
    # the reference "#/$defs/a%3Cb", as other validators read it.
    schema = scan(schema, base_uri=base_uri, draft=draft).document
    refused: list[str] = []
    resources: dict[str, Any] = {}

    def retrieve(uri: str) -> Any:
        document = None
        try:
            document = resolve(uri)
        except ReferenceRefused:
            document = None
        if document is None:
            refused.append(uri)
            raise ValueError(f"reference to {uri} refused")
        try:
            document = scan(document, base_uri=uri, draft=draft_of(document)).document
        except SchemaError:
            pass  # the engine says what is wrong with it
        resources[uri] = document
        return document

    limit = int(getattr(settings, "VALIDATION_REGEX_BACKTRACK_LIMIT", DEFAULT_BACKTRACK_LIMIT))
    source = SchemaSource(schema, base_uri, resources, format_assertion, limit)
    try:
        validator = jsonschema_rs.validator_for(schema, retriever=retrieve, **_options(source))
    except jsonschema_rs.ValidationError as exc:
        raise _schema_error(schema, draft, exc, refused) from None
    except (jsonschema_rs.ReferencingError, ValueError) as exc:
        raise SchemaError(str(exc).splitlines()[0], [_plain_error("$ref", str(exc).splitlines()[0])]) from None
    cost_limit = int(getattr(settings, "VALIDATION_SCHEMA_COST_LIMIT", DEFAULT_SCHEMA_COST_LIMIT))
    assess(schema, draft=draft, base_uri=base_uri, resources=resources, limit=cost_limit, max_depth=max_depth())
    return CompiledSchema(validator, draft, source, _key_of(source))


def _key_of(source: SchemaSource) -> str:
    try:
        text = exactjson.dumps(list(source.as_tuple()), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):  # not JSON after all: a key of its own
        return uuid.uuid4().hex
    return hashlib.sha256(text).hexdigest()


def _schema_error(schema: Any, draft: str, exc: Any, refused: list[str]) -> SchemaError:
    if refused:
        message = (
            f"The reference {refused[-1]} cannot be resolved: only this account's registered "
            "schemas (and the document itself) can be referenced."
        )
        return SchemaError(message, [_plain_error("$ref", message)])
    errors = list(meta_errors(schema, draft))
    if not errors:
        errors = [_plain_error(None, exc.message.splitlines()[0])]
    return SchemaError("The schema is not valid against its meta-schema.", errors)


_meta_validators: dict[str, Any] = {}


def meta_errors(schema: Any, draft: str) -> Iterator[dict[str, Any]]:
    """The errors of ``schema`` against its draft's meta-schema (built into
    the engine; nothing is fetched). Custom meta-schemas yield nothing."""
    uri = next((uri for uri, name in DRAFTS.items() if name == draft), None)
    if uri is None:
        return
    validator = _meta_validators.get(uri)
    if validator is None:
        suffix = "#" if draft in ("draft4", "draft6", "draft7") else ""
        validator = jsonschema_rs.validator_for({"$schema": uri + suffix, "$ref": uri + suffix})
        _meta_validators[uri] = validator
    for count, error in enumerate(validator.iter_errors(schema)):
        if count == MAX_ERRORS_PER_INSTANCE:
            return
        yield describe(error)


def engine_version() -> str:
    """The jsonschema-rs version, for the health page and the bench."""
    from importlib.metadata import version

    return version("jsonschema-rs")
