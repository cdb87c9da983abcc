"""The schema registry API: register, read, list, reference, isolate."""

from __future__ import annotations

from quotas.backends import get_backend
from tests.validation.conftest import ORDER_SCHEMA, Api
from validation.models import Schema


def test_register_returns_201_with_location_and_the_stable_uri(api: Api) -> None:
    response = api.register("order", "1.0.0", ORDER_SCHEMA)
    assert response.status_code == 201
    body = response.json()
    assert body["uri"] == "tollgate://schemas/order/1.0.0"
    assert body["draft"] == "2020-12"
    assert body["schema"] == ORDER_SCHEMA
    assert response["Location"] == "http://testserver/api/v1/schemas/order/1.0.0"
    assert api.get("/api/v1/schemas/order/1.0.0").json() == body


def test_versions_are_immutable(api: Api) -> None:
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    again = api.register("order", "1", {"type": "string"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "schema_exists"
    assert api.get("/api/v1/schemas/order/1").json()["schema"] == ORDER_SCHEMA


def test_invalid_schema_is_400_with_the_meta_schema_errors(api: Api) -> None:
    response = api.register("bad", "1", {"type": "invalid_type", "properties": {"a": {"minimum": "x"}}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_schema"
    paths = sorted(item["instance_path"] for item in error["details"]["errors"])
    assert paths == ["/properties/a/minimum", "/type"]
    assert set(error["details"]["errors"][0]) == {
        "instance_path",
        "schema_path",
        "keyword_location",
        "keyword",
        "message",
        "params",
    }
    assert not Schema.objects.exists()


def test_bad_names_versions_and_bodies_are_400(api: Api) -> None:
    assert api.post("/api/v1/schemas", {"name": "a b", "version": "1", "schema": {}}).json()["error"]["code"] == (
        "invalid_request"
    )
    assert api.register("order", "latest", {}).status_code == 400
    assert api.post("/api/v1/schemas", {"name": "x"}).status_code == 400
    broken = api.client.post("/api/v1/schemas", b"{", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"


def test_latest_is_the_most_recently_registered_version(api: Api) -> None:
    api.register("order", "2", {"type": "object"})
    api.register("order", "10", {"type": "array"})
    assert api.get("/api/v1/schemas/order/latest").json()["version"] == "10"
    assert api.get("/api/v1/schemas/order/3").json()["error"]["code"] == "schema_not_found"


def test_list_is_paginated(api: Api) -> None:
    for version in ("1", "2", "3"):
        api.register("order", version, {"type": "object"})
    api.register("customer", "1", {"type": "object"})
    first = api.get("/api/v1/schemas?page_size=2").json()
    assert first["count"] == 4 and first["page"] == 1 and first["previous"] is None
    assert [(s["name"], s["version"]) for s in first["results"]] == [("customer", "1"), ("order", "3")]
    assert "schema" not in first["results"][0]
    second = api.get(first["next"]).json()
    assert [(s["name"], s["version"]) for s in second["results"]] == [("order", "2"), ("order", "1")]
    assert second["next"] is None
    assert api.get("/api/v1/schemas?name=customer").json()["count"] == 1
    assert api.get("/api/v1/schemas?page=0").status_code == 400


def test_registered_schemas_reference_each_other_by_uri(api: Api) -> None:
    api.register("customer", "1", {"type": "object", "required": ["id"], "$defs": {"id": {"type": "integer"}}})
    order = {
        "properties": {
            "customer": {"$ref": "tollgate://schemas/customer/1"},
            "customer_id": {"$ref": "../customer/1#/$defs/id"},  # relative to tollgate://schemas/order/1
        }
    }
    assert api.register("order", "1", order).status_code == 201
    result = api.post(
        "/api/v1/validate", {"schema": "order/1", "instance": {"customer": {}, "customer_id": "x"}}
    ).json()
    assert sorted(error["schema_path"] for error in result["errors"]) == [
        "/properties/customer/$ref/required",
        "/properties/customer_id/$ref/type",
    ]


def test_references_to_unregistered_latest_or_remote_schemas_are_refused(api: Api) -> None:
    api.register("customer", "1", {"type": "object"})
    for ref in ("tollgate://schemas/customer/2", "tollgate://schemas/customer/latest", "https://example.com/s.json"):
        response = api.register("order", "1", {"$ref": ref})
        assert response.status_code == 400
        assert response.json()["error"]["details"]["errors"][0]["keyword"] == "$ref"


def test_another_accounts_schemas_are_invisible(api: Api, db: None) -> None:
    from tests.factories import issue_key

    api.register("customer", "1", {"type": "object"})
    other = Api(issue_key().key)
    assert other.get("/api/v1/schemas/customer/1").status_code == 404
    assert other.get("/api/v1/schemas").json()["count"] == 0
    # Not even by reference: the other account's registry has no customer/1.
    refused = other.register("order", "1", {"$ref": "tollgate://schemas/customer/1"})
    assert refused.status_code == 400
    assert other.post("/api/v1/validate", {"schema": "customer/1", "instance": {}}).status_code == 404
    # The same name and version are free in the other account.
    assert other.register("customer", "1", {"type": "string"}).status_code == 201


def test_registry_calls_cost_requests_not_units(api: Api) -> None:
    api.register("order", "1", ORDER_SCHEMA)
    api.get("/api/v1/schemas")
    api.get("/api/v1/schemas/order/1")
    account_id = Schema.objects.get().account_id
    assert get_backend().usage([account_id])[account_id] == {"day": 0, "month": 0}


def test_validators_are_compiled_once_per_schema_version(api: Api, monkeypatch: object) -> None:
    from validation import schemas

    api.register("order", "1", ORDER_SCHEMA)
    api.register("order", "2", ORDER_SCHEMA)
    compiled: list[object] = []
    original = schemas.compile_schema
    monkeypatch.setattr(schemas, "compile_schema", lambda *a, **k: compiled.append(1) or original(*a, **k))  # type: ignore[attr-defined]
    for version in ("1", "1", "latest", "2", "1"):
        api.post("/api/v1/validate", {"schema": f"order/{version}", "instance": {}})
    assert compiled == []  # each was compiled once, when it was registered
    from validation.schemas import validators

    validators.clear()  # another process: compiles each version on first use, once
    for version in ("1", "1", "latest", "2", "1"):
        api.post("/api/v1/validate", {"schema": f"order/{version}", "instance": {}})
    assert len(compiled) == 2


def test_names_that_cannot_exist_are_not_found_without_a_query(api: Api) -> None:
    # A NUL byte would make PostgreSQL raise (a 500) if it reached a query.
    for path in ("/api/v1/schemas/a%00b/1", "/api/v1/schemas/order/1%0A", "/api/v1/schemas/%20x/latest"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "schema_not_found"
    assert api.post("/api/v1/validate", {"schema": "a\x00b/1", "instance": 1}).status_code == 404
    assert api.get("/api/v1/schemas?name=a%00b").json()["count"] == 0
    assert api.register("order\n", "1", {}).status_code == 400
    refused = api.register("order", "1", {"$ref": "tollgate://schemas/a%00b/1"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_schema"
