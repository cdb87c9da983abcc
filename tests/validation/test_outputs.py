"""?output=flag|basic|detailed, checked against the specification's output
schema, and the default list's params, keyword locations and branch reasons.

The suite copy in use has no ``output-tests/``; the output schema below is
the 2020-12 core specification's (``https://json-schema.org/draft/2020-12/output/schema``,
section 12.4), as published.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import orjson
import pytest

from tests.factories import issue_key
from tests.validation.conftest import Api
from validation.runner import job_run

OUTPUT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://json-schema.org/draft/2020-12/output/schema",
    "anyOf": [{"$ref": "#/$defs/flag"}, {"$ref": "#/$defs/basic"}, {"$ref": "#/$defs/detailed"}],
    "$defs": {
        "outputUnit": {
            "properties": {
                "valid": {"type": "boolean"},
                "keywordLocation": {"type": "string", "format": "json-pointer"},
                "absoluteKeywordLocation": {"type": "string", "format": "uri"},
                "instanceLocation": {"type": "string", "format": "json-pointer"},
                "error": {"type": "string"},
                "errors": {"$ref": "#/$defs/outputUnitArray"},
                "annotations": {"$ref": "#/$defs/outputUnitArray"},
            },
            "required": ["valid", "keywordLocation", "instanceLocation"],
            "allOf": [
                {
                    "if": {"properties": {"valid": {"const": False}}},
                    "then": {"anyOf": [{"required": ["error"]}, {"required": ["errors"]}]},
                },
                {
                    "if": {
                        "anyOf": [
                            {"properties": {"keywordLocation": {"pattern": "/\\$ref/"}}},
                            {"properties": {"keywordLocation": {"pattern": "/\\$dynamicRef/"}}},
                        ]
                    },
                    "then": {"required": ["absoluteKeywordLocation"]},
                },
            ],
        },
        "outputUnitArray": {"type": "array", "items": {"$ref": "#/$defs/outputUnit"}},
        "flag": {"properties": {"valid": {"type": "boolean"}}, "required": ["valid"]},
        "basic": {"$ref": "#/$defs/outputUnit"},
        "detailed": {"$ref": "#/$defs/outputUnit"},
    },
}
OUTPUT = jsonschema_rs.validator_for(OUTPUT_SCHEMA, validate_formats=True)
BASIC = jsonschema_rs.validator_for({**OUTPUT_SCHEMA, "anyOf": [{"$ref": "#/$defs/basic"}]}, validate_formats=True)

SCHEMA = {
    "type": "object",
    "required": ["id", "kind"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"enum": ["a", "b"]},
        "owner": {"$ref": "#/$defs/owner"},
        "contact": {"oneOf": [{"type": "string", "format": "email"}, {"type": "object", "required": ["phone"]}]},
        "tag": {"not": {"const": "x"}},
    },
    "$defs": {"owner": {"type": "object", "required": ["name"]}},
}
BAD = {"id": "1", "kind": "c", "owner": {}, "contact": {"mail": 1}, "tag": "x"}


@pytest.fixture
def registered(api: Api) -> Api:
    assert api.register("thing", "1", SCHEMA).status_code == 201
    return api


@pytest.mark.parametrize("output", ["flag", "basic", "detailed"])
@pytest.mark.parametrize("instance", [BAD, {"id": 1, "kind": "a"}, 3])
def test_each_format_is_valid_against_the_output_schema(registered: Api, output: str, instance: Any) -> None:
    response = registered.post(f"/api/v1/validate?output={output}", {"schema": "thing/1", "instance": instance})
    assert response.status_code == 200
    body = response.json()
    assert OUTPUT.is_valid(body), body
    assert body["valid"] is (instance != BAD and instance != 3)
    if output == "flag":
        assert body == {"valid": body["valid"]}


def test_basic_is_the_flat_list_with_absolute_keyword_locations(registered: Api) -> None:
    body = registered.post("/api/v1/validate?output=basic", {"schema": "thing/1", "instance": BAD}).json()
    assert BASIC.is_valid(body)
    units = {unit["keywordLocation"]: unit for unit in body["errors"]}
    assert units["/properties/owner/$ref/required"]["absoluteKeywordLocation"] == (
        "tollgate://schemas/thing/1#/$defs/owner/required"
    )
    assert units["/properties/kind/enum"]["instanceLocation"] == "/kind"
    assert all(unit["valid"] is False and unit["error"] for unit in body["errors"])


def test_detailed_nests_by_schema_and_lists_every_instance(registered: Api) -> None:
    body = registered.post(
        "/api/v1/validate?output=detailed", {"schema": "thing/1", "instances": [BAD, {"id": 1, "kind": "a"}]}
    ).json()
    assert (body["valid_count"], body["invalid_count"]) == (1, 1)
    first, second = body["results"]
    assert (
        first["index"] == 0
        and first["valid"] is False
        and OUTPUT.is_valid({k: v for k, v in first.items() if k != "index"})
    )
    assert second == {"index": 1, "valid": True, "keywordLocation": "", "instanceLocation": ""}
    locations = []

    def walk(unit: dict[str, Any]) -> None:
        locations.append(unit["keywordLocation"])
        for inner in unit.get("errors", []):
            walk(inner)

    walk(first)
    assert "/properties/contact/oneOf" in locations


def test_an_unknown_output_is_400(registered: Api) -> None:
    response = registered.post("/api/v1/validate?output=verbose", {"schema": "thing/1", "instance": 1})
    assert response.status_code == 400 and response.json()["error"]["details"] == {"field": "output"}


def test_the_default_list_has_params_locations_and_a_reason_per_branch(registered: Api) -> None:
    body = registered.post("/api/v1/validate", {"schema": "thing/1", "instance": BAD}).json()
    errors = {error["keyword"]: error for error in body["errors"]}
    assert errors["required"]["params"] == {"missingProperty": "name"}
    assert errors["required"]["keyword_location"] == "tollgate://schemas/thing/1#/$defs/owner/required"
    assert errors["enum"]["params"] == {"allowedValues": ["a", "b"]}
    assert errors["type"]["params"] == {"type": ["integer"]}
    one_of = errors["oneOf"]
    assert [[reason["keyword"] for reason in branch] for branch in one_of["branches"]] == [["type"], ["required"]]
    assert one_of["branches"][1][0]["params"] == {"missingProperty": "phone"}
    assert errors["not"]["schema_path"] == "/properties/tag/not"


def test_params_and_messages_are_bounded(api: Api) -> None:
    big = "v" * 100_000
    schema = {"enum": [f"{n}" for n in range(1000)], "properties": {"a": {"const": big}}}
    body = api.post("/api/v1/validate", {"schema": schema, "instance": {"a": "w" * 200_000}}).json()
    assert len(str(body)) < 5_000
    by_keyword = {error["keyword"]: error for error in body["errors"]}
    assert len(by_keyword["enum"]["params"]["allowedValues"]) == 20 and by_keyword["enum"]["params"]["truncated"]
    assert len(by_keyword["const"]["params"]["allowedValue"]) < 200


def test_a_huge_value_is_quoted_by_a_prefix_and_the_message_keeps_its_point(api: Api) -> None:
    document = {"k": "x" * 230_000}
    body = api.post("/api/v1/validate", {"schema": {"type": "array"}, "instance": document}).json()
    (error,) = body["errors"]
    assert len(error["message"]) < 300
    assert error["message"].endswith('is not of type "array"')


def test_a_job_reports_each_invalid_record_in_the_chosen_format(db: None) -> None:
    api = Api(issue_key(rate_limits="", quotas="1000/day").key)
    assert api.register("thing", "1", SCHEMA).status_code == 201
    body = b'{"id": 1, "kind": "a"}\n{"id": "x", "kind": "c"}\nnot json\n'
    ndjson = "application/x-ndjson"
    refused = api.client.post("/api/v1/jobs?schema=thing/1&output=verbose", body, content_type=ndjson)
    assert refused.status_code == 400
    response = api.client.post("/api/v1/jobs?schema=thing/1&output=basic", body, content_type=ndjson)
    assert response.status_code == 202
    assert job_run(job_id=response.json()["id"]) == "succeeded"
    done = api.get(response.json()["url"]).json()
    assert done["output"] == "basic" and done["summary"] == {"valid": 1, "invalid": 2}
    report = [line for line in b"".join(api.get(f"{response.json()['url']}/errors").streaming_content).splitlines()]
    first, second = (orjson.loads(line) for line in report)
    (unit,) = first["errors"]
    assert first["record"] == 2 and BASIC.is_valid(unit) and unit["valid"] is False
    assert second["record"] == 3 and second["errors"][0]["code"] == "invalid_json"  # a record error stays one
