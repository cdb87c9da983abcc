"""References by ``$id`` inside an account: one by one, as a bundle, bundled
back into one document; pins; isolation between accounts."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema_rs
import pytest

from tests.factories import issue_key
from tests.validation.conftest import Api
from validation.models import Schema, SchemaResource

BASE = "https://example.com/schemas/"
# Several "files" referencing each other by absolute and relative $id URLs,
# with a cycle (person -> address -> person) and an embedded $id in $defs.
PERSON = {
    "$id": f"{BASE}person.json",
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"$ref": "common.json#/$defs/name"},
        "address": {"$ref": f"{BASE}address.json"},
        "friends": {"type": "array", "items": {"$ref": "#"}},
    },
}
ADDRESS = {
    "$id": f"{BASE}address.json",
    "type": "object",
    "required": ["zip"],
    "properties": {
        "zip": {"$ref": "https://example.com/zip"},
        "resident": {"$ref": "person.json"},
    },
}
COMMON = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"{BASE}common.json",
    "$defs": {
        "name": {"type": "string", "minLength": 1},
        "zip": {"$id": "https://example.com/zip", "type": "string", "pattern": "^[0-9]{5}$"},
    },
}
DOCUMENTS = {"person": PERSON, "address": ADDRESS, "common": COMMON}
ROOT = {"$ref": f"{BASE}person.json"}

INSTANCES: list[Any] = [
    {"name": "Ada"},
    {"name": ""},
    {"name": "Ada", "address": {"zip": "12345"}},
    {"name": "Ada", "address": {"zip": "1234"}},
    {"name": "Ada", "address": {"zip": "12345", "resident": {"name": "Bob", "address": {"zip": "x"}}}},
    {"name": "Ada", "friends": [{"name": "Bob"}, {"name": 3}]},
    {"address": {}},
    "not an object",
]


def bundle_body(*names: str) -> dict[str, Any]:
    return {"schemas": [{"name": name, "version": "1", "schema": DOCUMENTS[name]} for name in names]}


def verdicts(api: Api, schema: Any) -> list[bool]:
    response = api.post("/api/v1/validate", {"schema": schema, "instances": INSTANCES})
    assert response.status_code == 200, response.json()
    return [result["valid"] for result in response.json()["results"]]


EXPECTED = [True, False, True, False, False, False, False, False]


@pytest.mark.parametrize("order", [("person", "address", "common"), ("common", "address", "person")])
def test_a_bundle_with_a_cycle_registers_in_any_order(api: Api, order: tuple[str, ...]) -> None:
    response = api.post("/api/v1/schemas/bundle", bundle_body(*order))
    assert response.status_code == 201, response.json()
    assert [item["name"] for item in response.json()["results"]] == list(order)
    assert verdicts(api, "person/1") == EXPECTED
    assert verdicts(api, ROOT) == EXPECTED  # an inline schema finds them by $id too
    person = api.get("/api/v1/schemas/person/1").json()
    # What person's own references resolved to (zip is found inside common.json).
    assert person["references"] == {f"{BASE}common.json": "common/1", f"{BASE}address.json": "address/1"}
    assert api.get("/api/v1/schemas/address/1").json()["references"] == {
        "https://example.com/zip": "common/1",
        f"{BASE}person.json": "person/1",
        f"{BASE}common.json": "common/1",  # what person.json needs
    }


def test_one_by_one_in_dependency_order_and_the_cycle_needs_a_bundle(api: Api) -> None:
    assert api.register("common", "1", COMMON).status_code == 201
    # address -> person -> address: neither can come first alone.
    refused = api.register("address", "1", ADDRESS)
    assert refused.status_code == 400
    errors = refused.json()["error"]["details"]["errors"]
    assert [(e["code"], e["schema_path"], e["reference"]) for e in errors] == [
        ("unresolved_reference", "/properties/resident/$ref", f"{BASE}person.json")
    ]
    acyclic = copy.deepcopy(ADDRESS)
    del acyclic["properties"]["resident"]
    assert api.register("address", "1", acyclic).status_code == 201
    assert api.register("person", "1", PERSON).status_code == 201
    # The same, but that an address's resident is not checked any more.
    assert verdicts(api, "person/1") == [True, False, True, False, True, False, False, False]


def test_every_unresolved_reference_is_reported_at_once_with_its_pointer(api: Api) -> None:
    broken = {
        "$id": f"{BASE}broken.json",
        "properties": {
            "a": {"$ref": "missing.json"},
            "b": {"$ref": "#/$defs/nowhere"},
            "c": {"items": {"$ref": "https://elsewhere.example/x#/y"}},
            "d": {"$ref": "#anchor-nobody-defines"},
        },
    }
    response = api.post(
        "/api/v1/schemas/bundle",
        {
            "schemas": [
                {"name": "common", "version": "1", "schema": COMMON},
                {"name": "b", "version": "1", "schema": broken},
            ]
        },
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_schema"
    found = [(e["schema"], e["schema_path"], e["reference"]) for e in error["details"]["errors"]]
    assert found == [
        ("b/1", "/properties/a/$ref", f"{BASE}missing.json"),
        ("b/1", "/properties/b/$ref", f"{BASE}broken.json#/$defs/nowhere"),
        ("b/1", "/properties/c/items/$ref", "https://elsewhere.example/x#/y"),
        ("b/1", "/properties/d/$ref", f"{BASE}broken.json#anchor-nobody-defines"),
    ]
    assert not Schema.objects.exists()  # all or nothing


def test_a_broken_local_reference_is_an_unresolved_reference_not_a_meta_schema_error(api: Api) -> None:
    response = api.register("x", "1", {"properties": {"a": {"$ref": "#/$defs/a"}}})
    assert response.status_code == 400
    (error,) = response.json()["error"]["details"]["errors"]
    assert error["code"] == "unresolved_reference" and error["schema_path"] == "/properties/a/$ref"


def test_a_uri_belongs_to_one_name_and_new_versions_are_pinned(api: Api) -> None:
    assert api.post("/api/v1/schemas/bundle", bundle_body("common", "address", "person")).status_code == 201
    taken = api.register("other", "1", {"$id": f"{BASE}common.json"})
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "schema_id_taken"
    assert taken.json()["error"]["details"] == {"uri": f"{BASE}common.json", "name": "common"}
    embedded = api.register("other", "1", {"$defs": {"z": {"$id": "https://example.com/zip"}}})
    assert embedded.json()["error"]["code"] == "schema_id_taken"
    # A new version of the same name may define it again; what references
    # it keeps the version it was registered with.
    stricter = copy.deepcopy(COMMON)
    stricter["$defs"]["name"]["minLength"] = 10
    assert api.register("common", "2", stricter).status_code == 201
    assert verdicts(api, "person/1") == EXPECTED
    newer = api.register("person", "2", PERSON).json()
    assert newer["references"][f"{BASE}common.json"] == "common/2"
    assert verdicts(api, "person/2")[0] is False  # "Ada" is shorter than 10 now
    assert SchemaResource.objects.filter(uri=f"{BASE}common.json").count() == 2


def test_another_accounts_ids_never_resolve(api: Api) -> None:
    assert api.post("/api/v1/schemas/bundle", bundle_body("common", "address", "person")).status_code == 201
    other = Api(issue_key(rate_limits="1000/s", quotas="100000/day").key)
    refused = other.register("mine", "1", ROOT)
    assert refused.status_code == 400
    assert refused.json()["error"]["details"]["errors"][0]["code"] == "unresolved_reference"
    inline = other.post("/api/v1/validate", {"schema": ROOT, "instance": {}})
    assert inline.status_code == 400 and inline.json()["error"]["code"] == "invalid_schema"
    # ... and the same $id is free there: accounts do not share URIs.
    assert other.post("/api/v1/schemas/bundle", bundle_body("common", "address", "person")).status_code == 201


def test_the_bundled_document_validates_offline_as_the_registered_one(api: Api) -> None:
    assert api.post("/api/v1/schemas/bundle", bundle_body("person", "address", "common")).status_code == 201
    api.register("root", "1", ROOT)
    for name in ("root", "person", "address"):
        response = api.get(f"/api/v1/schemas/{name}/1?bundle=true")
        assert response.status_code == 200
        bundled = response.json()["schema"]

        def refuse(uri: str) -> Any:
            raise ValueError(f"offline: {uri}")

        offline = jsonschema_rs.validator_for(bundled, retriever=refuse, validate_formats=True)
        registered = verdicts(api, f"{name}/1")
        assert [offline.is_valid(instance) for instance in INSTANCES] == registered
        # Tollgate itself validates the bundle (inline) alike.
        assert verdicts(api, bundled) == registered
    assert api.get("/api/v1/schemas/root/1?bundle=maybe").status_code == 400


def test_bundles_are_checked_like_single_registrations(api: Api) -> None:
    assert api.post("/api/v1/schemas/bundle", {"schemas": []}).status_code == 400
    assert api.post("/api/v1/schemas/bundle", {"schemas": [{"name": "a"}]}).status_code == 400
    twice = {"schemas": [{"name": "a", "version": "1", "schema": {}}, {"name": "a", "version": "1", "schema": {}}]}
    assert api.post("/api/v1/schemas/bundle", twice).json()["error"]["code"] == "schema_exists"
    clash = {
        "schemas": [
            {"name": "a", "version": "1", "schema": {"$id": f"{BASE}same.json"}},
            {"name": "b", "version": "1", "schema": {"$id": f"{BASE}same.json"}},
        ]
    }
    assert api.post("/api/v1/schemas/bundle", clash).json()["error"]["code"] == "schema_id_taken"
    assert api.register("a", "1", {}).status_code == 201
    exists = api.post("/api/v1/schemas/bundle", {"schemas": [{"name": "a", "version": "1", "schema": {}}]})
    assert exists.status_code == 409 and exists.json()["error"]["code"] == "schema_exists"
    invalid = api.post("/api/v1/schemas/bundle", {"schemas": [{"name": "c", "version": "1", "schema": {"type": 3}}]})
    assert invalid.status_code == 400 and invalid.json()["error"]["details"]["errors"][0]["schema"] == "c/1"


@pytest.mark.parametrize("ref", ["#/$defs/a<b", "#/$defs/a b", "#/$defs/{x}", "#/$defs/a|b", "#/$defs/ä"])
def test_refs_with_characters_rfc3986_does_not_allow_are_read_leniently(api: Api, ref: str) -> None:
    name = ref.removeprefix("#/$defs/")
    schema = {"$defs": {name: {"type": "integer"}}, "properties": {"n": {"$ref": ref}}}
    assert api.register("lenient", "1", schema).status_code == 201
    assert verdicts(api, "lenient/1")[0] is True
    response = api.post("/api/v1/validate", {"schema": "lenient/1", "instance": {"n": "x"}})
    assert response.json()["valid"] is False


def test_an_id_may_not_claim_a_tollgate_uri(api: Api) -> None:
    for schema in ({"$id": "tollgate://schemas/other/1"}, {"$id": "address.json"}):
        response = api.register("addr", "1", schema)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_schema"
        assert "absolute" in response.json()["error"]["message"]
    assert api.register("addr", "1", {"$id": "https://example.com/address.json"}).status_code == 201
