"""The attacks on the synchronous API, against a real gunicorn with ONE worker
(so the request after an attack is served by the same worker, and its pid
shows it was never killed), on the production configuration.

Each attack asserts its status and code (documented in the OpenAPI
description), a bound on the time taken and on the answer's size, and that
the worker serves the next request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.factories import issue_key
from tests.processes import database_url, gunicorn, service_env
from tests.redis_server import RedisServer
from tests.validation.hostile import (
    assert_documented,
    assert_error,
    fanout_chain,
    gunicorn_workers,
    nested_items,
    within,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ORDER = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, django_db_blocker: Any, redis_server: RedisServer, tmp_path_factory: Any
) -> Iterator[str]:
    with django_db_blocker.unblock():
        url = database_url()
    env = service_env(REDIS_URL=redis_server.url, DATABASE_URL=url, MEDIA_ROOT=str(tmp_path_factory.mktemp("media")))
    with gunicorn(env, workers=1) as base:
        yield base


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    key = issue_key(rate_limits="", quotas="1000000/day", max_sync_instances=100).key
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        assert (
            client.post("/api/v1/schemas", json={"name": "order", "version": "1", "schema": ORDER}).status_code == 201
        )
        yield client


def serves_next(api: httpx.Client, worker: set[int]) -> None:
    """The same worker answers an ordinary validation, correctly."""
    response = api.post("/api/v1/validate", json={"schema": "order/1", "instances": [{"id": 1}, {"id": "x"}]})
    assert response.status_code == 200, response.text
    assert [result["valid"] for result in response.json()["results"]] == [True, False]
    assert gunicorn_workers(str(api.base_url).rstrip("/")) == worker


def worker_of(api: httpx.Client) -> set[int]:
    workers = gunicorn_workers(str(api.base_url).rstrip("/"))
    assert len(workers) == 1
    return workers


def test_an_exponential_schema_is_refused_before_it_runs(api: httpx.Client) -> None:
    worker = worker_of(api)
    schema = fanout_chain(20)
    assert len(orjson.dumps(schema)) < 1500  # the issue's 1.4 KB body
    with within(5):
        response = api.post("/api/v1/validate", json={"schema": schema, "instance": 1})
    error = assert_error(response, 400, "schema_too_complex", "validate")
    assert "anyOf" in error["details"]["reason"] and len(response.content) < 2000
    with within(5):
        registered = api.post("/api/v1/schemas", json={"name": "chain", "version": "1", "schema": schema})
    assert_error(registered, 400, "schema_too_complex", "registerSchema")
    loop = {
        "$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}},
        "$ref": "#/$defs/a",
    }
    assert (
        "without end"
        in assert_error(
            api.post("/api/v1/validate", json={"schema": loop, "instance": 1}), 400, "schema_too_complex", "validate"
        )["message"]
    )
    serves_next(api, worker)


def test_a_slow_validation_the_analysis_lets_through_is_stopped_at_its_budget(api: httpx.Client) -> None:
    worker = worker_of(api)
    # 12 levels pass the analysis (2^13 evaluations per value) but each
    # invalid value costs the errors path about 0.1 s: 100 of them, 10 s.
    body = {"schema": fanout_chain(12), "instances": [1] * 100}
    with within(2 + 4) as took:
        response = api.post("/api/v1/validate", json=body)
    assert took() >= 1.9  # it ran to the budget, not less
    error = assert_error(response, 422, "validation_timeout", "validate")
    assert error["details"] == {"seconds": 2.0} and len(response.content) < 1000
    with within(3):
        serves_next(api, worker)


def test_two_slow_requests_at_once_leave_the_api_available(api: httpx.Client) -> None:
    worker = worker_of(api)
    body = {"schema": fanout_chain(12), "instances": [1] * 100}
    answers: list[int] = []
    attackers = [
        threading.Thread(target=lambda: answers.append(api.post("/api/v1/validate", json=body).status_code))
        for _ in range(2)
    ]
    for attacker in attackers:
        attacker.start()
    # One worker serves both in turn: the API is back after two budgets.
    with within(2 * 2 + 5):
        assert api.get("/api/v1/ping").status_code == 200
    for attacker in attackers:
        attacker.join()
    assert answers == [422, 422]
    serves_next(api, worker)


def test_error_messages_are_cut_whatever_they_quote(api: httpx.Client) -> None:
    worker = worker_of(api)
    body = {"schema": {"const": "c" * 10**6}, "instances": ["z"] * 100}
    with within(10):
        response = api.post("/api/v1/validate", json=body)
    assert response.status_code == 200
    assert_documented(response, "validate")
    assert len(response.content) < 100_000  # was 100 MB
    messages = [error["message"] for result in response.json()["results"] for error in result["errors"]]
    assert len(messages) == 100
    assert all(len(message) <= 256 + 30 and message.endswith(" characters)") for message in messages)
    assert messages[0].startswith('"ccc') and "… (1000015 characters)" in messages[0]
    serves_next(api, worker)


def test_the_errors_of_one_answer_have_a_byte_cap(api: httpx.Client) -> None:
    worker = worker_of(api)
    # 100 errors of ~400 bytes per instance, 40 instances: 1.6 MB uncapped.
    schema = {"type": "array", "items": {"const": "k" * 300}}
    with within(10):
        response = api.post("/api/v1/validate", json={"schema": schema, "instances": [["z"] * 101] * 40})
    assert response.status_code == 200
    assert 0.9 * 2**20 < len(response.content) < 1.1 * 2**20
    results = response.json()["results"]
    assert all(result["errors_truncated"] for result in results)
    assert results[-1]["errors"] == [] and not results[-1]["valid"]
    serves_next(api, worker)


def test_deep_schemas_and_bodies_are_400_too_deep_and_readable_within_the_limit(api: httpx.Client) -> None:
    worker = worker_of(api)
    with within(5):
        deep = api.post("/api/v1/validate", json={"schema": nested_items(254), "instance": [1]})
    assert assert_error(deep, 400, "too_deep", "validate")["details"] == {"field": "schema", "max_depth": 128}
    stored = api.post("/api/v1/schemas", json={"name": "deep", "version": "1", "schema": nested_items(253)})
    assert_error(stored, 400, "too_deep", "registerSchema")
    # At the limit: stored, and read back (as stored, whatever the nesting).
    ok = api.post("/api/v1/schemas", json={"name": "deep", "version": "2", "schema": nested_items(127)})
    assert ok.status_code == 201, ok.text
    back = api.get("/api/v1/schemas/deep/2")
    assert back.status_code == 200 and back.json()["schema"] == nested_items(127)
    body = b'{"schema": {}, "instance": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    too_deep_body = api.post("/api/v1/validate", content=body, headers={"Content-Type": "application/json"})
    assert_error(too_deep_body, 400, "too_deep", "validate")
    serves_next(api, worker)


def raw_request(base: str, head: bytes, body: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_a_chunked_body_with_a_broken_chunk_size_is_400(api: httpx.Client) -> None:
    worker = worker_of(api)
    base = str(api.base_url).rstrip("/")
    head = (
        b"POST /api/v1/jobs?schema=order/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Authorization: " + api.headers["Authorization"].encode() + b"\r\n"
        b"Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with within(5):
        answer = raw_request(base, head, b'9\r\n{"id": 1}\r\nzz\r\n{"id": 2}\r\n0\r\n\r\n')
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b'"code":"invalid_request"' in rest and len(answer) < 2000
    serves_next(api, worker)


@pytest.mark.parametrize(
    "body",
    [
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.ndjson"\r\n\r\n{"id": 1}\n',  # never closed
        b"--B\r\nContent-Disposition: form-data\r\n\r\n--B--\r\n",  # a part without a name
        b"not multipart at all",
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''%ff%fe\r\n\r\nx\r\n--B--\r\n",
    ],
)
def test_a_malformed_multipart_body_is_400(api: httpx.Client, body: bytes) -> None:
    worker = worker_of(api)
    response = api.post(
        "/api/v1/jobs?schema=order/1", content=body, headers={"Content-Type": "multipart/form-data; boundary=B"}
    )
    assert response.status_code in (400, 415), response.text
    assert_documented(response, "createJob")
    serves_next(api, worker)
