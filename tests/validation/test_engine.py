"""The engine wrapper: drafts, formats, references, regex and depth limits, errors as data."""

from __future__ import annotations

from typing import Any

import pytest

from validation.bounds import MAX_ERRORS_PER_INSTANCE
from validation.depth import DEFAULT_MAX_DEPTH, too_deep
from validation.engine import SchemaError, compile_schema, depth_error, draft_of

DRAFT4 = "http://json-schema.org/draft-04/schema#"
DRAFT7 = "http://json-schema.org/draft-07/schema#"


def refuse(uri: str) -> None:
    return None


def compiled(schema: Any, **kwargs: Any) -> Any:
    return compile_schema(schema, resolve=kwargs.pop("resolve", refuse), **kwargs)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("schema", "draft"),
    [
        ({}, "2020-12"),
        ({"$schema": DRAFT4}, "draft4"),
        ({"$schema": "http://json-schema.org/draft-06/schema"}, "draft6"),
        ({"$schema": DRAFT7}, "draft7"),
        ({"$schema": "https://json-schema.org/draft/2019-09/schema"}, "2019-09"),
        ({"$schema": "https://json-schema.org/draft/2020-12/schema"}, "2020-12"),
        (True, "2020-12"),
    ],
)
def test_draft_is_chosen_by_dollar_schema(schema: Any, draft: str) -> None:
    assert draft_of(schema) == draft
    assert compiled(schema).draft == draft


def test_the_draft_changes_what_a_keyword_means() -> None:
    # Draft 4: exclusiveMaximum is a boolean modifier; 2020-12 (the default): a number.
    assert not compiled({"$schema": DRAFT4, "maximum": 5, "exclusiveMaximum": True}).is_valid(5)
    assert not compiled({"exclusiveMaximum": 5}).is_valid(5)
    with pytest.raises(SchemaError):
        compiled({"maximum": 5, "exclusiveMaximum": True})
    # 2020-12 prefixItems is unknown (ignored) in draft 7.
    assert not compiled({"prefixItems": [{"type": "string"}]}).is_valid([1])
    assert compiled({"$schema": DRAFT7, "prefixItems": [{"type": "string"}]}).is_valid([1])


def test_draft_3_is_refused() -> None:
    with pytest.raises(SchemaError, match="not supported"):
        compiled({"$schema": "http://json-schema.org/draft-03/schema#"})


@pytest.mark.parametrize("draft", [DRAFT4, DRAFT7, "https://json-schema.org/draft/2020-12/schema"])
def test_formats_are_asserted_in_every_draft(draft: str) -> None:
    schema = compiled({"$schema": draft, "format": "email"})
    assert schema.is_valid("buyer@example.com")
    valid, errors, _ = schema.check("not an address")
    assert not valid
    assert errors[0]["keyword"] == "format"


@pytest.mark.parametrize("uri", ["https://example.com/schema.json", "file:///etc/passwd", "http://127.0.0.1:1/x"])
def test_references_outside_the_document_go_to_the_resolver_only(uri: str) -> None:
    asked: list[str] = []

    def resolve(requested: str) -> None:
        asked.append(requested)
        return None

    with pytest.raises(SchemaError) as refused:
        compiled({"$ref": uri}, resolve=resolve)
    assert asked == [uri]
    assert refused.value.errors[0]["keyword"] == "$ref"
    assert uri in refused.value.message


def test_a_resolved_reference_is_used() -> None:
    customer = {"type": "object", "required": ["id"]}
    schema = compiled(
        {"properties": {"customer": {"$ref": "tollgate://schemas/customer/1"}}},
        resolve=lambda uri: customer if uri == "tollgate://schemas/customer/1" else None,
    )
    assert schema.is_valid({"customer": {"id": 1}})
    _valid, errors, _ = schema.check({"customer": {}})
    assert errors == [
        {
            "instance_path": "/customer",
            "schema_path": "/properties/customer/$ref/required",
            "keyword_location": "tollgate://schemas/customer/1#/required",
            "keyword": "required",
            "message": '"id" is a required property',
            "params": {"missingProperty": "id"},
        }
    ]


def test_catastrophic_regex_stops_at_the_backtracking_limit(settings: Any) -> None:
    # A backreference forces the backtracking engine; without a limit this
    # pattern takes seconds on 24 characters and doubles with each one more.
    settings.VALIDATION_REGEX_BACKTRACK_LIMIT = 10_000
    schema = compiled({"type": "string", "pattern": r"^(a|a)*\1$"})
    valid, errors, _ = schema.check("a" * 40 + "c")
    assert not valid
    assert errors[0]["keyword"] == "pattern"
    assert "backtracking" in errors[0]["message"]


def test_instances_deeper_than_the_limit_are_rejected_cleanly(settings: Any) -> None:
    assert DEFAULT_MAX_DEPTH == settings.VALIDATION_MAX_DEPTH == 64
    assert not too_deep(nested(64), 64)
    assert too_deep(nested(65), 64)
    assert depth_error(64) == {
        "instance_path": "",
        "schema_path": "",
        "keyword": None,
        "code": "too_deep",
        "message": "The instance is nested deeper than 64 levels.",
    }
    # Far beyond any recursion limit, still a clean answer.
    assert too_deep(nested(100_000), 64)
    assert not too_deep({"a": [{"b": 1}]}, 3)
    assert too_deep({"a": [{"b": {}}]}, 3)


def test_errors_are_data_with_json_pointers() -> None:
    schema = compiled(
        {
            "properties": {
                "a/b": {"type": "integer"},
                "items": {"items": {"properties": {"qty": {"minimum": 1}}}},
                "closed": False,
            },
            "dependentRequired": {"x": ["y"]},
            "additionalProperties": {"type": "string"},
        }
    )
    valid, errors, truncated = schema.check({"a/b": "1", "items": [{"qty": 0}], "closed": 1, "x": "1", "extra": 2})
    assert not valid and not truncated
    by_keyword = {error["keyword"]: error for error in errors}
    assert by_keyword["type"]["instance_path"] in ("/a~1b", "/extra")
    assert by_keyword["minimum"] == {
        "instance_path": "/items/0/qty",
        "schema_path": "/properties/items/items/properties/qty/minimum",
        "keyword_location": "json-schema:///#/properties/items/items/properties/qty/minimum",
        "keyword": "minimum",
        "message": "0 is less than the minimum of 1",
        "params": {"limit": 1},
    }
    assert by_keyword["false"]["instance_path"] == "/closed"
    assert by_keyword["dependentRequired"]["message"] == '"y" is a required property'


def test_errors_of_one_instance_are_capped() -> None:
    schema = compiled({"items": {"type": "string"}})
    valid, errors, truncated = schema.check(list(range(500)))
    assert not valid and truncated
    assert len(errors) == MAX_ERRORS_PER_INSTANCE


def test_an_invalid_schema_lists_its_meta_schema_errors() -> None:
    with pytest.raises(SchemaError) as invalid:
        compiled({"type": "invalid_type", "properties": {"a": {"minimum": "x"}}})
    paths = sorted(error["instance_path"] for error in invalid.value.errors)
    assert paths == ["/properties/a/minimum", "/type"]
    with pytest.raises(SchemaError):
        compiled(["not", "a", "schema"])


def test_only_the_engine_module_imports_jsonschema_rs() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    importers = sorted(
        str(path.relative_to(root))
        for folder in ("project", "quotas", "validation", "health", "apidocs")
        for path in (root / folder).rglob("*.py")
        if "jsonschema_rs" in path.read_text()
    )
    assert importers == ["validation/engine.py"]
