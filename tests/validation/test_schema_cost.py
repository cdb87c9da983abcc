"""The compile-time analysis: exponential and looping schemas are refused
with a reason; ordinary recursive schemas (and the official suite, see
test_conformance) are not."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.validation.hostile import fanout_chain, fanout_per_level
from validation.engine import draft_of
from validation.schema_cost import SchemaTooComplex, assess

LIMIT = 25_000


def cost(schema: Any, resources: dict[str, Any] | None = None, base_uri: str | None = None) -> int:
    draft = draft_of(schema)
    return assess(schema, draft=draft, base_uri=base_uri, resources=resources or {}, limit=LIMIT, max_depth=64)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"left": {"$ref": "#"}, "right": {"$ref": "#"}}},  # a binary tree
        {"properties": {"value": {}, "next": {"anyOf": [{"type": "null"}, {"$ref": "#"}]}}},  # a linked list
        {"type": "array", "items": {"$ref": "#"}},
        {
            "$defs": {
                "json": {
                    "anyOf": [
                        {"type": "object", "additionalProperties": {"$ref": "#/$defs/json"}},
                        {"type": "array", "items": {"$ref": "#/$defs/json"}},
                        {"type": ["string", "number", "boolean", "null"]},
                    ]
                }
            },
            "$ref": "#/$defs/json",
        },
        fanout_chain(10),  # 2^11 evaluations: allowed
        {"oneOf": [{"$ref": "#/$defs/a"}] * 200, "$defs": {"a": {"allOf": [{"type": "object"}, {"required": ["x"]}]}}},
    ],
)
def test_ordinary_schemas_pass(schema: Any) -> None:
    assert 0 < cost(schema) <= LIMIT


@pytest.mark.parametrize("applicator", ["anyOf", "oneOf", "allOf"])
def test_fan_out_through_references_is_refused_with_where_it_starts(applicator: str) -> None:
    with pytest.raises(SchemaTooComplex) as refused:
        cost(fanout_chain(20, applicator=applicator))
    assert "more than 250000" in refused.value.reason and "at depth 0" in refused.value.reason


def test_fan_out_that_doubles_with_every_level_of_the_instance_is_refused() -> None:
    with pytest.raises(SchemaTooComplex, match=r"at depth 1[0-9]"):
        cost(fanout_per_level())


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$defs": {"a": {"not": {"$ref": "#/$defs/b"}}, "b": {"if": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"},
        {"$anchor": "top", "anyOf": [{"type": "string"}, {"$ref": "#top"}]},
        {"$id": "urn:x", "$dynamicAnchor": "m", "allOf": [{"$dynamicRef": "#m"}]},
    ],
)
def test_a_reference_loop_at_one_value_is_refused(schema: Any) -> None:
    with pytest.raises(SchemaTooComplex, match="without end"):
        cost(schema)


def test_references_into_other_documents_are_followed() -> None:
    registered = {"tollgate://schemas/step/1": fanout_chain(20)}
    with pytest.raises(SchemaTooComplex):
        cost({"$ref": "tollgate://schemas/step/1"}, registered)
    relative = {"tollgate://schemas/b/1": {"anyOf": [{"$ref": "../a/1"}, {"$ref": "../a/1"}]}}
    relative["tollgate://schemas/a/1"] = {"$ref": "../b/1"}
    with pytest.raises(SchemaTooComplex, match="without end"):
        cost({"$ref": "../b/1"}, relative, base_uri="tollgate://schemas/c/1")


def test_in_draft_7_the_siblings_of_ref_are_not_counted() -> None:
    siblings = {"anyOf": [{"$ref": "#/definitions/a"}] * 2}
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"a": {"type": "string"}}}
    assert cost({**schema, "$ref": "#/definitions/a", **siblings}) < cost({**schema, **siblings})


def test_the_analysis_of_a_huge_schema_is_bounded() -> None:
    huge = {"properties": {f"p{n}": {"anyOf": [{"type": "string"}, {"minimum": n}]} for n in range(200_000)}}
    started = time.monotonic()
    assert cost(huge) == -1  # too large to analyse: left to the time budget
    assert time.monotonic() - started < 5


def test_locations_in_reasons_stay_short_whatever_the_names() -> None:
    name = "n" * 1_000_000
    chain = fanout_chain(20)
    nested: Any = {"$ref": chain["$ref"]}
    for _ in range(50):
        nested = {"properties": {name: nested}}
    nested["$defs"] = chain["$defs"]
    started = time.monotonic()
    with pytest.raises(SchemaTooComplex) as refused:
        cost(nested)
    assert time.monotonic() - started < 5 and len(refused.value.reason) < 1000
