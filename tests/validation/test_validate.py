"""Synchronous validation: shapes, metering (one unit per instance, charged
before validating), limits."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from quotas.backends import get_backend
from quotas.models import Plan
from tests.conftest import bearer
from tests.factories import issue_key
from tests.validation.conftest import ORDER_SCHEMA, Api
from validation import services

GOOD = {"id": 1, "qty": 2, "email": "buyer@example.com"}
BAD = {"id": 2, "qty": 0, "email": "buyer@example.com"}


def units_used(api: Api) -> int:
    from quotas.models import ApiKey

    account_id = ApiKey.objects.get(prefix=api.key.split("_")[1]).account_id
    return get_backend().usage([account_id])[account_id]["day"]


@pytest.fixture
def order(api: Api) -> Api:
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    return api


def test_one_instance_answers_valid_and_errors(order: Api) -> None:
    assert order.post("/api/v1/validate", {"schema": "order/1", "instance": GOOD}).json() == {
        "valid": True,
        "errors": [],
    }
    assert order.post("/api/v1/validate", {"schema": "order/latest", "instance": BAD}).json() == {
        "valid": False,
        "errors": [
            {
                "instance_path": "/qty",
                "schema_path": "/properties/qty/minimum",
                "keyword_location": "tollgate://schemas/order/1#/properties/qty/minimum",
                "keyword": "minimum",
                "message": "0 is less than the minimum of 1",
                "params": {"limit": 1},
            }
        ],
    }
    assert units_used(order) == 2


def test_instances_answer_per_instance_and_cost_one_unit_each(order: Api) -> None:
    response = order.post("/api/v1/validate", {"schema": "order/1", "instances": [GOOD, BAD, GOOD]})
    body = response.json()
    assert body["valid_count"] == 2 and body["invalid_count"] == 1
    assert [(r["index"], r["valid"], len(r["errors"])) for r in body["results"]] == [
        (0, True, 0),
        (1, False, 1),
        (2, True, 0),
    ]
    assert units_used(order) == 3
    assert "r=99997" in response["RateLimit"]  # the daily quota, in the same headers


def test_inline_schemas_validate_and_may_reference_registered_ones(order: Api) -> None:
    inline = {"type": "array", "items": {"$ref": "tollgate://schemas/order/1"}}
    result = order.post("/api/v1/validate", {"schema": inline, "instance": [GOOD, BAD]}).json()
    assert [e["instance_path"] for e in result["errors"]] == ["/1/qty"]
    invalid = order.post("/api/v1/validate", {"schema": {"type": 12}, "instance": 1})
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "invalid_schema"


def test_too_many_instances_is_refused_before_charging(order: Api) -> None:
    response = order.post("/api/v1/validate", {"schema": "order/1", "instances": [GOOD] * 51})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_instances"
    assert response.json()["error"]["details"]["max_sync_instances"] == 50
    assert units_used(order) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"schema": "order/1"}, 400, "invalid_request"),
        ({"schema": "order/1", "instance": 1, "instances": [1]}, 400, "invalid_request"),
        ({"schema": "order/1", "instances": {}}, 400, "invalid_request"),
        ({"schema": "order/1", "instances": []}, 400, "invalid_request"),
        ({"instance": 1}, 400, "invalid_request"),
        ({"schema": 12, "instance": 1}, 400, "invalid_request"),
        ({"schema": "nope/1", "instance": 1}, 404, "schema_not_found"),
        ([1, 2], 400, "invalid_request"),
    ],
)
def test_bad_requests_are_4xx_and_cost_no_units(order: Api, body: Any, status: int, code: str) -> None:
    response = order.post("/api/v1/validate", body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert units_used(order) == 0


def test_quota_too_small_for_the_instances_is_429_and_nothing_is_validated(db: None, monkeypatch: Any) -> None:
    api = Api(issue_key(rate_limits="", quotas="2/day").key)
    api.register("order", "1", ORDER_SCHEMA)
    validated: list[Any] = []
    original = services.payload_validate
    monkeypatch.setattr("validation.views.payload_validate", lambda **kw: validated.append(1) or original(**kw))
    response = api.post("/api/v1/validate", {"schema": "order/1", "instances": [GOOD, GOOD, GOOD]})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert "Retry-After" in response
    assert validated == []
    assert units_used(api) == 0


def test_deep_instances_are_refused_before_charging(order: Api) -> None:
    deep: Any = 1
    for _ in range(100):
        deep = {"a": deep}
    response = order.post("/api/v1/validate", {"schema": {}, "instances": [1, deep]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_deep"
    assert response.json()["error"]["details"] == {"field": "instances/1", "max_depth": 64}
    assert units_used(order) == 0


def test_a_body_over_the_plans_limit_is_413(db: None) -> None:
    small = Api(issue_key(rate_limits="", quotas="1000/day", max_sync_body_bytes=1000).key)
    response = small.post("/api/v1/validate", {"schema": {}, "instance": "x" * 2000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.json()["error"]["details"] == {"max_bytes": 1000}
    assert (
        small.post("/api/v1/schemas", {"name": "a", "version": "1", "schema": {"description": "x" * 2000}}).status_code
        == 413
    )
    assert small.post("/api/v1/validate", {"schema": {}, "instance": "x" * 500}).status_code == 200


def test_the_plans_limit_may_pass_djangos_default_up_to_the_ceiling(db: None, settings: Any) -> None:
    big = Api(issue_key(rate_limits="", quotas="1000/day", max_sync_body_bytes=8 * 1024 * 1024).key)
    three_mb = {"schema": {"type": "string"}, "instance": "x" * (3 * 1024 * 1024)}
    assert big.post("/api/v1/validate", three_mb).json()["valid"] is True  # Django's 2.5 MiB no longer applies
    settings.VALIDATION_SYNC_BODY_CEILING_BYTES = 2 * 1024 * 1024
    capped = big.post("/api/v1/validate", three_mb)
    assert capped.status_code == 413 and capped.json()["error"]["details"] == {"max_bytes": 2 * 1024 * 1024}


def test_validation_needs_a_key(db: None) -> None:
    from django.test import Client

    assert Client().post("/api/v1/validate", {}, content_type="application/json").status_code == 401
    assert Client(**bearer("tg_nope")).get("/api/v1/validate").status_code == 401


def test_set_plan_sets_the_sync_body_limit(db: None) -> None:
    call_command("set_plan", "bodies", "--max-sync-body-kb", "4", stdout=StringIO())
    assert Plan.objects.get(name="bodies").max_sync_body_bytes == 4096
