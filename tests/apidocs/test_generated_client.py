"""A client generated from the OpenAPI document, as a client developer would
make one (openapi-python-client, from PyPI), runs the whole flow against the
live service: gunicorn, an rqworker and Redis. Every operation it generates
is called, and every answer parses into its documented model."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.factories import issue_key
from tests.processes import gunicorn
from tests.redis_server import RedisServer
from tests.validation.data import csv_text, ndjson, orders
from tests.validation.stack import stack_env, worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PACKAGE = "tollgate_generated_client"
SCHEMA = {
    "type": "object",
    "required": ["id", "qty"],
    "properties": {"id": {"type": "integer"}, "qty": {"type": "integer", "minimum": 1}},
}


@pytest.fixture(scope="module")
def env(django_db_setup: None, django_db_blocker: Any, redis_server: RedisServer, tmp_path_factory: Any) -> dict:
    return stack_env(django_db_blocker, redis_server.url, tmp_path_factory.mktemp("client-media"))


@pytest.fixture(scope="module")
def server(env: dict[str, str]) -> Iterator[str]:
    with gunicorn(env, workers=2) as base:
        yield base


@pytest.fixture(scope="module")
def generated(server: str, tmp_path_factory: Any) -> Iterator[ModuleType]:
    """The client package, generated from the live service's document."""
    root = tmp_path_factory.mktemp("generated")
    spec = root / "openapi.json"
    spec.write_text(httpx.get(f"{server}/api/v1/openapi.json").text)
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [
            *(str(bin_dir / "openapi-python-client"), "generate", "--path", str(spec)),
            *("--meta", "none", "--output-path", str(root / PACKAGE)),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Only the raw NDJSON and CSV upload media types are beyond this
    # generator: it sends files as octet-stream (with ?format=) or multipart.
    warnings = (result.stdout + result.stderr).split("WARNING")[1:]
    assert len(warnings) == 2, result.stdout + result.stderr
    for warning in warnings:
        assert "POST /api/v1/jobs" in warning and "Unsupported content type" in warning, warning
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
            del sys.modules[name]


class _Group:
    """``group.operation`` for the generated modules ``api/<group>/<operation>.py``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, operation: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{self.name}.{operation}")


def _api(generated: ModuleType, name: str) -> Any:
    return _Group(name)


def _model(generated: ModuleType, name: str) -> Any:
    return getattr(importlib.import_module(f"{PACKAGE}.models"), name)


def test_the_whole_client_flow(generated: ModuleType, server: str, env: dict[str, str]) -> None:
    key = issue_key(rate_limits="1000/m", quotas="100000/day", max_sync_instances=50).key
    client = generated.AuthenticatedClient(base_url=server, token=key, raise_on_unexpected_status=True)
    types = importlib.import_module(f"{PACKAGE}.types")
    schemas, validation, jobs, metering, webhooks, docs = (
        _api(generated, name) for name in ("schemas", "validation", "jobs", "metering", "webhooks", "documentation")
    )

    # Metering and the document.
    assert metering.ping.sync(client=client).pong is True
    assert metering.ping_head.sync_detailed(client=client).status_code == 200
    assert docs.openapi.sync(client=client) is not None

    # The schema registry.
    body = _model(generated, "RegisterSchemaBody").from_dict({"name": "order", "version": "1", "schema": SCHEMA})
    registered = schemas.register_schema.sync(client=client, body=body, idempotency_key="register-order-1")
    assert type(registered).__name__ == "RegisterSchemaResponse201", registered
    assert registered.name == "order" and registered.version == "1"
    again = schemas.register_schema.sync_detailed(client=client, body=body, idempotency_key="register-order-1")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    conflict = schemas.register_schema.sync(client=client, body=body)
    assert type(conflict).__name__ == "Error409" and conflict.error.code.value == "schema_exists"
    got = schemas.get_schema.sync("order", "latest", client=client)
    assert type(got).__name__ == "GetSchemaResponse200" and got.version == "1"
    listed = schemas.list_schemas.sync(client=client)
    assert [item.name for item in listed.results] == ["order"]

    # Validation: one, many, an inline schema.
    validate_body = _model(generated, "ValidateBody")
    one = validation.validate.sync(
        client=client, body=validate_body.from_dict({"schema": "order/1", "instance": {"id": 1, "qty": 2}})
    )
    assert one.valid is True and one.errors == []
    many = validation.validate.sync(
        client=client,
        body=validate_body.from_dict({"schema": "order/1", "instances": [{"id": 1, "qty": 0}, {"id": 2, "qty": 1}]}),
    )
    assert (many.valid_count, many.invalid_count) == (1, 1)
    assert [result.index for result in many.results] == [0, 1]
    inline = validation.validate.sync(
        client=client, body=validate_body.from_dict({"schema": {"type": "string"}, "instance": 12})
    )
    assert inline.valid is False and inline.errors[0].keyword == "type"

    # Jobs in each format: NDJSON and JSON as files (octet-stream and ?format=), CSV multipart.
    records, invalid = orders(40, invalid_every=8)
    file_ = types.File
    fmt = _model(generated, "CreateJobFormat")
    uploads = {
        "ndjson": jobs.create_job.sync(
            client=client, body=file_(payload=ndjson(records)), schema="order/1", format_=fmt.NDJSON
        ),
        "json": jobs.create_job.sync(
            client=client, body=file_(payload=json.dumps(records).encode()), schema="order/1", format_=fmt.JSON
        ),
        "csv": jobs.create_job.sync(
            client=client,
            body=_model(generated, "CreateJobFilesBody")(
                file=file_(payload=csv_text(records, ("id", "qty")), file_name="orders.csv", mime_type="text/csv"),
                schema="order/1",
            ),
        ),
    }
    for name, accepted in uploads.items():
        assert type(accepted).__name__ == "CreateJobResponse202", (name, accepted)
        assert accepted.records == 40
    # A job cancelled before any worker runs it.
    doomed = jobs.create_job.sync(
        client=client, body=file_(payload=ndjson(records)), schema="order/1", format_=fmt.NDJSON
    )
    cancelled = jobs.cancel_job.sync(doomed.id, client=client)
    assert cancelled.status.value == "cancelled" and cancelled.units.refunded == 40

    kinds = {
        "ndjson": ("line", [n + 1 for n in sorted(invalid)]),
        "json": ("index", sorted(invalid)),
        "csv": ("row", [n + 1 for n in sorted(invalid)]),
    }
    with worker(env):
        for name, accepted in uploads.items():
            deadline = time.monotonic() + 60
            while (job := jobs.get_job.sync(accepted.id, client=client)).status.value not in (
                "succeeded",
                "failed",
            ):
                assert time.monotonic() < deadline, job
                time.sleep(0.1)
            assert job.status.value == "succeeded", (name, job)
            assert (job.summary.valid, job.summary.invalid) == (35, 5)
            assert job.record_kind.value == kinds[name][0]
            report = jobs.get_job_errors.sync(accepted.id, client=client)
            assert isinstance(report, str), report
            lines = [json.loads(line) for line in report.splitlines()]
            assert [(line["record"], line["record_kind"]) for line in lines] == [
                (n, kinds[name][0]) for n in kinds[name][1]
            ]
            with_errors = jobs.get_job.sync(
                accepted.id, client=client, include=_model(generated, "GetJobInclude").ERRORS
            )
            assert [e.record for e in with_errors.errors] == kinds[name][1]
    listed_jobs = jobs.list_jobs.sync(client=client, status=_model(generated, "ListJobsStatus").SUCCEEDED)
    assert listed_jobs.count == 3

    # Webhooks.
    created = webhooks.create_webhook.sync(
        client=client,
        body=_model(generated, "CreateWebhookBody").from_dict(
            {"url": "https://hooks.example.com/t", "events": ["job.failed"]}
        ),
    )
    assert type(created).__name__ == "CreateWebhookResponse201" and created.secret.startswith("whsec_")
    assert [item.id for item in webhooks.list_webhooks.sync(client=client).results] == [created.id]
    assert webhooks.get_webhook.sync(created.id, client=client).url == "https://hooks.example.com/t"
    assert webhooks.delete_webhook.sync_detailed(created.id, client=client).status_code == 204
    assert type(webhooks.get_webhook.sync(created.id, client=client)).__name__ == "Error404"

    # Usage, then a 429 with its parsed error and Retry-After.
    usage = metering.usage.sync(client=client)
    assert {limit.name for limit in usage.limits} >= {"daily-quota"}
    tight = generated.AuthenticatedClient(base_url=server, token=issue_key(rate_limits="2/m", quotas="").key)
    answers = [metering.ping.sync_detailed(client=tight) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert type(answers[-1].parsed).__name__ == "Error429"
    assert answers[-1].parsed.error.code.value == "rate_limited"
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[-1].parsed.error.request_id == answers[-1].headers["X-Request-ID"]
