"""Validation jobs for the operations page's tests, made the way clients and
workers make them: uploaded through the API, failed by ``job_fail``."""

from __future__ import annotations

import orjson
from django.test import Client

from tests.conftest import bearer
from tests.factories import issue_key
from validation.jobs import job_fail
from validation.models import ValidationJob

SCHEMA = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}


def failed_validation_job(key: str | None = None) -> ValidationJob:
    """A 3-record job, uploaded through the API, then failed for a
    server-side reason as the runner fails one (its upload kept, its quota
    refunded). Its RQ entry is enqueued on commit (transactional tests)."""
    key = key or issue_key(quotas="1000/day").key
    api = Client(**bearer(key))
    schema = {"name": "orders", "version": "1", "schema": SCHEMA}
    response = api.post("/api/v1/schemas", orjson.dumps(schema), content_type="application/json")
    assert response.status_code in (201, 409), response.content
    records = b'{"id": 1}\n{"id": 2}\n{"id": "three"}\n'
    response = api.post("/api/v1/jobs?schema=orders/1", records, content_type="application/x-ndjson")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert job_fail(job_id=job_id, code="internal_error", message="The job failed on the server.")
    return ValidationJob.objects.select_related("account").get(pk=job_id)
