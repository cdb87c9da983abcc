"""Running a job inline: claiming, idempotence, fencing, cancellation,
server-side failures (refunded) and how often progress is written."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.files.storage import default_storage
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from quotas.backends import get_backend
from quotas.contract import Charge
from tests.factories import issue_key
from tests.validation.conftest import ORDER_SCHEMA, stored_files
from tests.validation.data import ndjson, orders
from validation import runner
from validation.jobs import job_cancel, job_create
from validation.models import ValidationJob
from validation.recovery import jobs_recover
from validation.runner import job_run
from validation.schemas import schema_register
from validation.uploads import Upload


def create(records: int = 200, invalid_every: int = 7, *, reserve: bool = True) -> ValidationJob:
    """A stored, reserved, queued job, as the upload view leaves it."""
    account = issue_key(rate_limits="", quotas="100000/day").api_key.account
    schema = schema_register(account_id=account.pk, name="order", version="1", document=ORDER_SCHEMA)
    data = ndjson(orders(records, invalid_every=invalid_every)[0])
    from django.core.files.base import ContentFile

    name = default_storage.save(f"uploads/{account.pk}/job.ndjson", ContentFile(data))
    at = 0.0
    if reserve:
        decision = get_backend().charge(account_subject(account.pk), Charge(0, records), int(time.time() * 1000))
        at = decision.at_ms / 1000
    return job_create(
        account_id=account.pk,
        schema=schema,
        upload=Upload(name, len(data), records, "ndjson"),
        units_reserved=records if reserve else 0,
        reserved_at=at,
    )


def account_subject(account_id: int) -> Any:
    from quotas.contract import Subject
    from quotas.models import Account

    plan = Account.objects.get(pk=account_id).plan
    return Subject(account_id, 0, get_backend().generation(account_id), plan.rate_list, plan.quota_list)


def used(job: ValidationJob) -> int:
    return get_backend().usage([job.account_id])[job.account_id]["day"]


def result(job: ValidationJob) -> tuple[Any, ...]:
    job.refresh_from_db()
    report = default_storage.open(job.report).read() if job.report else b""
    return job.status, job.processed, job.valid_count, job.invalid_count, job.first_errors, report


def test_a_job_runs_once_however_often_it_is_delivered(db: None, media_root: Path) -> None:
    job = create()
    assert job_run(job_id=job.pk) == "succeeded"
    first = result(job)
    assert first[:4] == ("succeeded", 200, 172, 28)
    assert job_run(job_id=job.pk) == "skipped"
    assert result(job) == first
    assert ValidationJob.objects.get(pk=job.pk).attempts == 1


def test_a_job_run_again_after_a_crash_gives_the_same_result(
    db: None, media_root: Path, monkeypatch: Any, settings: Any
) -> None:
    clean = create(2000)
    job_run(job_id=clean.pk)
    expected = result(clean)

    job = create(2000)
    calls = {"n": 0}
    original = runner._Run.write

    def crash_on_second_write(self: Any, **fields: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OperationalError("the database went away mid-job")
        original(self, **fields)

    settings.VALIDATION_PROGRESS_SECONDS = 0.0
    monkeypatch.setattr(runner._Run, "write", crash_on_second_write)
    with pytest.raises(OperationalError):
        job_run(job_id=job.pk)
    crashed = ValidationJob.objects.get(pk=job.pk)
    assert crashed.status == "running" and 0 < crashed.processed < 2000
    monkeypatch.setattr(runner._Run, "write", original)

    from datetime import timedelta

    from django.utils import timezone

    recovered = jobs_recover(now=timezone.now() + timedelta(minutes=5))
    assert recovered.requeued == [str(job.pk)]
    assert job_run(job_id=job.pk) == "succeeded"
    again = result(job)
    assert again[:5] == expected[:5]
    assert again[5] == expected[5].replace(str(clean.pk).encode(), str(job.pk).encode())
    assert ValidationJob.objects.get(pk=job.pk).attempts == 2
    assert used(job) == 2000  # reserved once, never charged by a run


def test_a_superseded_run_stops_without_writing(db: None, media_root: Path, monkeypatch: Any) -> None:
    job = create()
    original = runner._Run.write

    def hand_over_then_write(self: Any, **fields: Any) -> None:
        # Recovery gave the job to another run (attempt 2) meanwhile.
        ValidationJob.objects.filter(pk=self.job.pk).update(attempts=2)
        original(self, **fields)

    monkeypatch.setattr(runner._Run, "write", hand_over_then_write)
    assert job_run(job_id=job.pk) == "interrupted"
    row = ValidationJob.objects.get(pk=job.pk)
    assert (row.status, row.processed, row.report) == ("running", 0, "")
    assert [name for name in stored_files(media_root) if name.startswith("reports/")] == []


def test_cancelling_a_running_job_stops_it_and_refunds_the_rest(
    db: None, media_root: Path, monkeypatch: Any, settings: Any
) -> None:
    job = create(records=3000)
    original = runner._Run.write
    settings.VALIDATION_PROGRESS_SECONDS = 0.0

    def cancel_after_first_progress(self: Any, **fields: Any) -> None:
        original(self, **fields)
        if self.processed:  # a write may come before the first batch (a tick while it runs)
            job_cancel(account_id=self.job.account_id, job_id=self.job.pk)

    monkeypatch.setattr(runner._Run, "write", cancel_after_first_progress)
    assert job_run(job_id=job.pk) == "interrupted"
    row = ValidationJob.objects.get(pk=job.pk)
    assert row.status == "cancelled"
    assert 0 < row.processed < 3000  # progress is checked after every batch (a chunk read)
    assert row.refund_units == 3000 - row.processed and row.refunded_at is not None
    assert used(job) == row.processed
    # The report of what it processed (and paid for) stays; the upload goes.
    assert row.upload == "" and stored_files(media_root) == [row.report]
    with default_storage.open(row.report, "rb") as file:
        lines = [orjson.loads(line) for line in file.read().splitlines()]
    _, invalid = orders(3000, invalid_every=7)
    assert [line["record"] for line in lines] == [n + 1 for n in sorted(invalid) if n < row.processed]
    assert {line["record_kind"] for line in lines} == {"line"}
    assert row.invalid_count == len(lines) and row.valid_count == row.processed - len(lines)
    assert [e["record"] for e in row.first_errors] == [line["record"] for line in lines][:100]


def test_a_storage_failure_fails_the_job_and_refunds_it(db: None, media_root: Path) -> None:
    job = create()
    default_storage.delete(job.upload)  # the upload is gone: not the client's fault
    assert used(job) == 200
    assert job_run(job_id=job.pk) == "failed"
    row = ValidationJob.objects.get(pk=job.pk)
    assert row.status == "failed"
    assert row.error["code"] == "storage_unavailable"
    assert row.refund_units == 200 and row.refunded_at is not None
    assert used(job) == 0


def test_a_bug_fails_the_job_internal_error_and_refunds_it(db: None, media_root: Path, monkeypatch: Any) -> None:
    job = create()

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(runner, "schema_validator", broken)
    assert job_run(job_id=job.pk) == "failed"
    row = ValidationJob.objects.get(pk=job.pk)
    assert row.error["code"] == "internal_error"
    assert used(job) == 0


@pytest.mark.parametrize("finish", ["failed", "cancelled"])
def test_the_write_that_finishes_a_job_claims_its_refund(db: None, media_root: Path, finish: str) -> None:
    # No reader (a client polling the job) ever sees it finished with its
    # refund still to come: "refunded" is claimed in that same write.
    job = create()
    with CaptureQueriesContext(connection) as queries:
        if finish == "failed":
            default_storage.delete(job.upload)
            assert job_run(job_id=job.pk) == "failed"
        else:
            job_cancel(account_id=job.account_id, job_id=job.pk)
    finishing = [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and f"'{finish}'" in q["sql"]]
    assert len(finishing) == 1 and '"refunded_at"' in finishing[0]
    assert used(job) == 0


def test_a_job_reserved_without_redis_refunds_nothing(db: None, media_root: Path) -> None:
    job = create(reserve=False)
    default_storage.delete(job.upload)
    assert job_run(job_id=job.pk) == "failed"
    assert ValidationJob.objects.get(pk=job.pk).refund_units == 0


@pytest.mark.parametrize("seconds", [3600.0, 0.0])
def test_progress_is_written_at_most_once_per_interval(
    db: None, media_root: Path, settings: Any, seconds: float
) -> None:
    settings.VALIDATION_PROGRESS_SECONDS = seconds
    job = create(records=5000)  # five chunks of 64 KiB: five batches
    with CaptureQueriesContext(connection) as queries:
        job_run(job_id=job.pk)
    fenced = [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "processed" in q["sql"]]
    # The claim sets no progress; the final write is the one with the result;
    # with no interval, one write after every batch at least.
    assert len(fenced) == 1 if seconds else len(fenced) >= 5 + 1
