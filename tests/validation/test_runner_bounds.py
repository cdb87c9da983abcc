"""What a job writes is bounded and storable, and a job that fails on our
side says why, leaves no orphan file, and can be retried from scratch.

Run on PostgreSQL (``DATABASE_URL=postgres://…``) these tests are the ones
that matter: PostgreSQL refuses NUL in text and jsonb, SQLite does not."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DataError, connection

from quotas.backends import get_backend
from quotas.contract import Charge
from tests.factories import issue_key
from tests.validation.conftest import stored_files
from tests.validation.test_runner import account_subject
from validation import runner
from validation.failed_jobs import failed_job_retry
from validation.jobs import job_create
from validation.models import Schema, ValidationJob
from validation.runner import job_run
from validation.schemas import schema_register, validators
from validation.uploads import Upload

pytestmark = pytest.mark.django_db


def stored_job(document: Any, data: bytes, records: int, *, fmt: str = "ndjson") -> ValidationJob:
    """A stored, reserved, queued job of ``records`` records, as the upload view leaves it."""
    account = issue_key(rate_limits="", quotas="10000000/day").api_key.account
    schema = schema_register(account_id=account.pk, name="s", version="1", document=document)
    name = default_storage.save(f"uploads/{account.pk}/job.{fmt}", ContentFile(data))
    decision = get_backend().charge(account_subject(account.pk), Charge(0, records), int(time.time() * 1000))
    upload = Upload(name, len(data), records, fmt)
    return job_create(
        account_id=account.pk, schema=schema, upload=upload, units_reserved=records, reserved_at=decision.at_ms / 1000
    )


def used(job: ValidationJob) -> int:
    return get_backend().usage([job.account_id])[job.account_id]["day"]


def test_nul_and_odd_names_are_stored_escaped(media_root: Path) -> None:
    closed = {"type": "object", "properties": {"ok": {}}, "additionalProperties": False}
    lines = [b'{"a\\u0000b": "x"}', b'{"ok": 1}', b'{"\\u0000": {"\\u0000": 1}}']
    job = stored_job(closed, b"\n".join(lines) + b"\n", 3)
    assert job_run(job_id=job.pk) == "succeeded"  # on PostgreSQL this was a failure in a loop
    job.refresh_from_db()
    assert (job.status, job.valid_count, job.invalid_count) == ("succeeded", 1, 2)
    assert job.error is None and job.attempts == 1
    first = job.first_errors[0]
    assert "a\\u0000b" in first["message"] and "\x00" not in orjson.dumps(job.first_errors).decode("unicode_escape")
    report = [orjson.loads(line) for line in default_storage.open(job.report).read().splitlines()]
    assert "a\x00b" in report[0]["errors"][0]["message"]  # the report (a file) keeps the exact text
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT first_errors::text FROM validation_validationjob WHERE id = %s", [job.pk])
            assert "u0000" in cursor.fetchone()[0]


def test_data_the_database_refuses_fails_the_job_at_once_with_no_orphan_report(
    media_root: Path, monkeypatch: Any
) -> None:
    job = stored_job({"type": "integer"}, b'"x"\n1\n', 2)
    original = runner._Run.write

    def refuse_the_result(self: Any, **fields: Any) -> None:
        if "status" in fields:
            raise DataError("unsupported Unicode escape sequence")  # what PostgreSQL said to a NUL
        original(self, **fields)

    monkeypatch.setattr(runner._Run, "write", refuse_the_result)
    assert job_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == "failed" and job.error["code"] == "internal_error"  # not worker_lost, minutes later
    assert job.refund_units == 2 and used(job) == 0
    assert [name for name in stored_files(media_root) if name.startswith("reports/")] == []
    assert stored_files(media_root) == [job.upload]  # kept for a retry

    monkeypatch.setattr(runner._Run, "write", original)
    retried = failed_job_retry(job_id=job.pk)
    assert (retried.status, retried.attempts) == ("queued", 0)
    assert job_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    assert (job.attempts, job.valid_count, job.invalid_count) == (1, 1, 1)


def test_a_run_from_before_a_retry_cannot_write(media_root: Path, monkeypatch: Any) -> None:
    job = stored_job({"type": "integer"}, b"1\n", 1)
    stale = ValidationJob.objects.get(pk=job.pk)
    ValidationJob.objects.filter(pk=job.pk).update(status="running", attempts=1, started_at="2020-01-01T00:00:00Z")
    stale = ValidationJob.objects.get(pk=job.pk)
    old_run = runner._Run(stale)
    ValidationJob.objects.filter(pk=job.pk).update(status="failed")
    failed_job_retry(job_id=job.pk)
    assert job_run(job_id=job.pk) == "succeeded"  # attempt 1 again, started now
    with pytest.raises(runner.Interrupted):
        old_run.write()


def test_first_errors_have_a_byte_cap_and_the_report_a_cap_per_line_and_in_all(media_root: Path) -> None:
    # Every record "1" fails 100 times with ~300-byte messages: 30 KB a line
    # from a 2-byte record, 15,000 times its size.
    schema = {"allOf": [{"const": f"{n:03d}" + "k" * 297} for n in range(150)]}
    records = 200
    job = stored_job(schema, b"1\n" * records, records)
    assert job_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.invalid_count == records
    assert len(orjson.dumps(job.first_errors)) <= 70 * 1024 and len(job.first_errors) <= 100
    lines = default_storage.open(job.report).read().splitlines()
    assert all(len(line) <= 66 * 1024 for line in lines)
    assert orjson.loads(lines[0])["errors_truncated"] is True
    size = sum(len(line) + 1 for line in lines)
    assert size <= 4 * job.upload_bytes + 1024 * 1024
    assert job.report_truncated and len(lines) < records


def test_a_registered_schema_refused_by_todays_limits_fails_its_job_with_that_code(media_root: Path) -> None:
    job = stored_job({"type": "integer"}, b"1\n", 1)
    deep: Any = True
    for _ in range(200):
        deep = {"items": deep}
    Schema.objects.filter(pk=job.schema_id).update(document=orjson.dumps(deep).decode())  # stored before the limit
    validators.clear()  # a worker compiles it afresh
    assert job_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.error["code"] == "too_deep" and job.refund_units == 1
