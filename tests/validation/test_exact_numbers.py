"""Integers of any size stay exact: sync bodies, registered schemas, and the
three job formats (``project.exactjson``)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from project import exactjson
from tests.factories import issue_key
from tests.validation.conftest import Api
from validation.models import ValidationJob
from validation.runner import job_run

BIG = 18446744073709551616  # 2**64: one past what orjson keeps
ODD = BIG + 1


def raw_post(api: Api, path: str, text: str) -> Any:
    return api.client.post(path, text.encode(), content_type="application/json")


def test_loads_and_dumps_keep_integers_of_any_size() -> None:
    text = b'{"a":18446744073709551617,"b":[-99999999999999999999999,1.5,"12345678901234567890"]}'
    value = exactjson.loads(text)
    assert value == {"a": ODD, "b": [-99999999999999999999999, 1.5, "12345678901234567890"]}
    assert exactjson.dumps(value) == text
    assert orjson.loads(text)["a"] != ODD  # what the exact path is for
    for refused in (b"NaN", b"[Infinity]", b"[1, 2", b'"\xff 1234567890123456789"'):
        with pytest.raises(orjson.JSONDecodeError):
            exactjson.loads(refused)


@pytest.mark.parametrize(
    ("schema", "instance", "valid"),
    [
        ('{"const": 18446744073709551616}', "18446744073709551617", False),
        ('{"const": 18446744073709551616}', "18446744073709551616", True),
        ('{"multipleOf": 2}', "18446744073709551617", False),
        ('{"maximum": 18446744073709551616}', "18446744073709551617", False),
        ('{"enum": [100000000000000000000000000001]}', "100000000000000000000000000000", False),
        ('{"type": "integer"}', "-100000000000000000000000000000", True),
    ],
)
def test_sync_bodies_with_big_integers_are_validated_exactly(api: Api, schema: str, instance: str, valid: bool) -> None:
    response = raw_post(api, "/api/v1/validate", f'{{"schema": {schema}, "instance": {instance}}}')
    assert response.status_code == 200, response.content
    assert response.json()["valid"] is valid


def test_registered_schemas_are_stored_and_served_exactly(api: Api) -> None:
    body = '{"name": "big", "version": "1", "schema": {"const": 18446744073709551617}}'
    assert raw_post(api, "/api/v1/schemas", body).status_code == 201
    served = api.get("/api/v1/schemas/big/1")
    assert b'"const":18446744073709551617' in served.content
    assert exactjson.loads(served.content)["schema"]["const"] == ODD
    verdict = raw_post(
        api, "/api/v1/validate", '{"schema": "big/1", "instances": [18446744073709551617, 18446744073709551616]}'
    )
    assert [r["valid"] for r in verdict.json()["results"]] == [True, False]


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}, "required": ["n"]}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-ndjson", b'{"n": 18446744073709551616}\n{"n": 18446744073709551617}\n{"n": 4}\n'),
        ("application/json", b'[{"n": 18446744073709551616}, {"n": 18446744073709551617}, {"n": 4}]'),
        ("text/csv", b"n\n18446744073709551616\n18446744073709551617\n4\n"),
    ],
)
def test_jobs_keep_big_integers_in_every_format(db: None, content_type: str, body: bytes) -> None:
    api = Api(issue_key(rate_limits="", quotas="100000/day").key)
    assert api.register("even", "1", SCHEMA).status_code == 201
    response = api.client.post("/api/v1/jobs?schema=even/1", body, content_type=content_type, CONTENT_TYPE=content_type)
    assert response.status_code == 202, response.content
    job = ValidationJob.objects.get(pk=response.json()["id"])
    assert job_run(job_id=job.pk) == "succeeded"
    done = api.get(response.json()["url"] + "?include=errors").json()
    assert done["summary"] == {"valid": 2, "invalid": 1}
    first = 1 if content_type != "application/json" else 0
    assert [e["record"] for e in done["errors"]] == [first + 1]
