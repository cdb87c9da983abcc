"""Integers of any size stay exact, and decimals keep the value the client
sent: sync bodies, registered schemas, and the three job formats
(``project.exactjson``)."""

from __future__ import annotations

from decimal import Decimal
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


# -- decimals: kept as the client sent them where a double does not hold them --

LONG = "1.0000000000000000001"  # the nearest double is 1.0
NEAR = "0.10000000000000000555"  # the nearest double is 0.1's


def test_decimals_a_double_does_not_keep_are_read_and_written_exactly() -> None:
    text = b'{"a":1.0000000000000000001,"b":[0.1,2.5,0.10000000000000000555],"c":1E+400,"d":1E-400,"e":-3.25}'
    value = exactjson.loads(text)
    assert value["a"] == Decimal(LONG) and value["b"][2] == Decimal(NEAR)
    assert value["c"] == Decimal("1e400") and value["d"] == Decimal("1e-400")
    assert [type(v) for v in value["b"]] == [float, float, Decimal] and type(value["e"]) is float
    assert exactjson.dumps(value) == text  # as numbers, never strings or doubles
    # A double keeps these exactly: they stay floats (the engine reads a float by its shortest repr).
    assert exactjson.loads(b"[1e5, 2.5e-3, 5e-324, 1.7976931348623157e308, 123456789012.345]") == [
        1e5,
        0.0025,
        5e-324,
        1.7976931348623157e308,
        123456789012.345,
    ]
    records = [b'{"n": 0.5}', b'{"n": 1.0000000000000000001}', b'{"n": 1e-400, "s": "0000000000000000"}', b"[0.1]"]
    values, opens = exactjson.decode_many(records * 40)
    assert values == [{"n": 0.5}, {"n": Decimal(LONG)}, {"n": Decimal("1e-400"), "s": "0000000000000000"}, [0.1]] * 40
    assert opens == 1  # the most brackets in one record


@pytest.mark.parametrize(
    ("schema", "instance", "valid"),
    [
        ('{"maximum": 1}', LONG, False),
        ('{"maximum": 1}', "1.0", True),
        ('{"const": 0.1}', NEAR, False),
        ('{"const": 0.1}', "0.1", True),
        ('{"const": 0.10000000000000000001}', "0.1", False),
        ('{"maximum": 0.10000000000000000001}', "0.1", True),
        ('{"minimum": 0.10000000000000000001}', "0.1", False),
        ('{"enum": [0.10000000000000000001]}', "0.10000000000000000001", True),
        ('{"multipleOf": 0.01}', "19.990000000000000001", False),
        ('{"multipleOf": 0.01}', "19.99", True),
        ('{"exclusiveMinimum": 0}', "1e-400", True),
        ('{"maximum": 1e308}', "1e400", False),
        ('{"type": "integer"}', "1e400", True),
        ('{"type": "integer"}', LONG, False),
    ],
)
def test_sync_bodies_with_long_decimals_are_validated_exactly(
    api: Api, schema: str, instance: str, valid: bool
) -> None:
    response = raw_post(api, "/api/v1/validate", f'{{"schema": {schema}, "instance": {instance}}}')
    assert response.status_code == 200, response.content
    assert response.json()["valid"] is valid


def test_sync_errors_echo_decimals_as_sent(api: Api) -> None:
    schema = '{"properties": {"a": {"const": 0.1}, "b": {"maximum": 0.10000000000000000001}}}'
    response = raw_post(api, "/api/v1/validate", f'{{"schema": {schema}, "instance": {{"a": 0.1, "b": {NEAR}}}}}')
    assert response.status_code == 200, response.content
    (error,) = response.json()["errors"]  # a short float and a long decimal in one instance: only "b" fails
    assert error["instance_path"] == "/b"
    assert NEAR in error["message"]
    assert b'"limit":0.10000000000000000001' in response.content  # a number, exact


def test_registered_schemas_keep_long_decimals(api: Api) -> None:
    body = '{"name": "rate", "version": "1", "schema": {"maximum": 0.10000000000000000001, "minimum": 1E-400}}'
    assert raw_post(api, "/api/v1/schemas", body).status_code == 201, body
    served = api.get("/api/v1/schemas/rate/1")
    assert b'"maximum":0.10000000000000000001' in served.content
    assert b'"minimum":1E-400' in served.content
    verdict = raw_post(
        api,
        "/api/v1/validate",
        '{"schema": "rate/1", "instances": [0.1, 0.10000000000000000001, 0.10000000000000000002]}',
    )
    assert [r["valid"] for r in verdict.json()["results"]] == [True, True, False]


DECIMAL_SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "number", "maximum": 1},
        "p": {"type": "number", "maximum": Decimal("0.10000000000000000001")},
    },
    "required": ["n"],
}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "application/x-ndjson",
            b'{"n": 1.0, "p": 0.1}\n{"n": 1.0000000000000000001, "p": 0.1}\n{"n": 0.5, "p": 0.10000000000000000555}\n',
        ),
        (
            "application/json",
            b'[{"n": 1.0, "p": 0.1}, {"n": 1.0000000000000000001, "p": 0.1}, {"n": 0.5, "p": 0.10000000000000000555}]',
        ),
        ("text/csv", b"n,p\n1.0,0.1\n1.0000000000000000001,0.1\n0.5,0.10000000000000000555\n"),
    ],
)
def test_jobs_keep_long_decimals_in_every_format(db: None, content_type: str, body: bytes) -> None:
    api = Api(issue_key(rate_limits="", quotas="100000/day").key)
    body_of_schema = exactjson.dumps({"name": "exact", "version": "1", "schema": DECIMAL_SCHEMA})
    assert api.client.post("/api/v1/schemas", body_of_schema, content_type="application/json").status_code == 201
    response = api.client.post(
        "/api/v1/jobs?schema=exact/1", body, content_type=content_type, CONTENT_TYPE=content_type
    )
    assert response.status_code == 202, response.content
    job = ValidationJob.objects.get(pk=response.json()["id"])
    assert job_run(job_id=job.pk) == "succeeded"
    done = api.get(response.json()["url"] + "?include=errors")
    report = done.json()
    assert report["summary"] == {"valid": 1, "invalid": 2}
    first = 1 if content_type != "application/json" else 0
    assert [e["record"] for e in report["errors"]] == [first + 1, first + 2]
    messages = [e["message"] for e in report["errors"]]
    assert LONG in messages[0] and NEAR in messages[1], messages
    assert b'"limit":0.10000000000000000001' in done.content  # stored and served as a number, exactly


def test_job_batches_read_every_literal_exactly() -> None:
    from validation.parsing import RawBatch, parse_batch

    items = [b'{"n": 0.5}', b'{"n": 1e400}', b'{"n": 2.5e-300, "m": 1e-99}', b'{"n": 3e-400}', b"[1"]
    batch = parse_batch("ndjson", RawBatch([1, 2, 3, 4, 5], items), limit=64)
    assert batch.values == [{"n": 0.5}, {"n": Decimal("1e400")}, {"n": 2.5e-300, "m": 1e-99}, {"n": Decimal("3e-400")}]
    assert [type(value["n"]) for value in batch.values] == [float, Decimal, float, Decimal]
    assert [number for number, _ in batch.errors] == [5]
