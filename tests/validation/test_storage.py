"""Uploads and reports in a bucket: a real S3-compatible server (moto, over
HTTP on a loopback port), boto3 and django-storages unpatched. Uploads stream
in as multipart uploads holding one part in memory, the worker and the report
stream back out, and a bucket that is stopped or hung is an explicit fault:
503 ``storage_unavailable`` at upload (nothing stored, nothing charged), a job
failed ``storage_unavailable`` and refunded at run time."""

from __future__ import annotations

import time
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from botocore.response import StreamingBody
from django.core.files.storage import default_storage
from django.test import RequestFactory
from django.test.utils import override_settings
from django.utils import timezone

from project.s3_storage import PART_BYTES
from quotas.models import ApiKey
from tests.factories import issue_key
from tests.s3_server import S3Server
from tests.validation.conftest import ORDER_SCHEMA, Api
from tests.validation.data import ndjson, orders
from tests.validation.test_jobs_api import NDJSON, units, upload
from validation.models import ValidationJob
from validation.recovery import jobs_recover
from validation.runner import job_run
from validation.uploads import upload_receive

MB = 1024 * 1024


def new_bucket(server: S3Server) -> str:
    return server.create_bucket(f"tollgate-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    """A bucket of this test, as the default storage."""
    name = new_bucket(s3_server)
    with override_settings(STORAGES=s3_server.storages(name)):
        yield name


def make_api() -> Api:
    api = Api(issue_key(rate_limits="", quotas="10000000/day", max_upload_bytes=200 * MB).key)
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    return api


def big_ndjson(megabytes: int) -> tuple[bytes, int, set[int]]:
    records, invalid = orders(10_000, invalid_every=1000)
    block = ndjson(records)
    copies = megabytes * MB // len(block) + 1
    return block * copies, 10_000 * copies, invalid


def test_an_upload_streams_into_the_bucket_in_bounded_memory(db: None, bucket: str, s3_server: S3Server) -> None:
    api = make_api()
    account_id = ApiKey.objects.get(prefix=api.key.split("_")[1]).account_id
    body, records, _ = big_ndjson(48)
    request = RequestFactory().post("/api/v1/jobs", body, content_type=NDJSON)
    tracemalloc.start()
    try:
        stored = upload_receive(request=request, account_id=account_id, max_bytes=200 * MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.records == records and stored.size == len(body)
    head = s3_server.client().head_object(Bucket=bucket, Key=stored.name)
    assert head["ContentLength"] == len(body)
    assert head["ETag"].strip('"').endswith(f"-{-(-len(body) // PART_BYTES)}")  # a multipart upload
    # About three parts (the part being read, the one being sent, the read
    # buffer) whatever the upload's size: 29 MiB for 48 MiB as for 80 MiB.
    assert peak < 4 * PART_BYTES, f"peak {peak / MB:.1f} MiB for a {len(body) / MB:.0f} MiB upload"


def test_a_job_runs_from_the_bucket_and_its_report_streams_out(db: None, bucket: str, s3_server: S3Server) -> None:
    api = make_api()
    body, records, invalid = big_ndjson(3)
    job_id = upload(api, body).json()["id"]
    with default_storage.open(ValidationJob.objects.get(pk=job_id).upload) as opened:
        assert isinstance(opened.file, StreamingBody)  # the object's body, read as it is consumed
    assert job_run(job_id=job_id) == "succeeded"
    job = ValidationJob.objects.get(pk=job_id)
    assert (job.processed, job.invalid_count) == (records, records // 10_000 * len(invalid))
    assert job.upload == "" and s3_server.keys(bucket) == [job.report]  # the upload is deleted once done

    # A report of 30 MiB streams to the client chunk by chunk.
    line = b'{"record": 1, "errors": [{"instance_path": "/qty", "message": "0 is less than the minimum of 1"}]}\n'
    report = line * (30 * MB // len(line))
    s3_server.client().put_object(Bucket=bucket, Key=job.report, Body=report)
    response = api.get(f"/api/v1/jobs/{job_id}/errors")
    assert response.status_code == 200 and response.streaming
    received = 0
    tracemalloc.start()
    try:
        for chunk in response.streaming_content:
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == len(report)
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MiB to stream a {len(report) / MB:.0f} MiB report"


def test_an_upload_to_a_stopped_bucket_is_503_and_keeps_nothing(db: None, own_s3: S3Server) -> None:
    name = new_bucket(own_s3)
    api = make_api()
    with override_settings(STORAGES=own_s3.storages(name)):
        own_s3.stop()
        started = time.monotonic()
        response = upload(api, ndjson(orders(500, invalid_every=7)[0]))
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert int(response["Retry-After"]) > 0
    assert elapsed < 10
    assert units(api) == 0 and not ValidationJob.objects.exists()


def test_an_upload_to_a_hung_bucket_is_503_within_its_timeouts_and_keeps_nothing(db: None, s3_server: S3Server) -> None:
    name = new_bucket(s3_server)
    api = make_api()
    body, _, _ = big_ndjson(20)  # a multipart upload
    with override_settings(STORAGES=s3_server.storages(name, read_timeout=1, max_attempts=1)):
        s3_server.pause()
        try:
            started = time.monotonic()
            response = upload(api, body)
            elapsed = time.monotonic() - started
        finally:
            s3_server.resume()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert elapsed < 15
    assert units(api) == 0 and not ValidationJob.objects.exists()
    assert s3_server.keys(name) == []


def test_a_bucket_stopped_at_job_time_fails_the_job_and_refunds_it(db: None, own_s3: S3Server) -> None:
    name = new_bucket(own_s3)
    api = make_api()
    with override_settings(STORAGES=own_s3.storages(name)):
        job_id = upload(api, ndjson(orders(300, invalid_every=7)[0])).json()["id"]
        assert units(api) == 300
        own_s3.stop()
        assert job_run(job_id=job_id) == "failed"
    job = api.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "storage_unavailable"
    assert job["units"] == {"reserved": 300, "refunded": 300}
    assert units(api) == 0


def test_a_report_that_storage_cannot_serve_is_503(db: None, s3_server: S3Server) -> None:
    name = new_bucket(s3_server)
    api = make_api()
    with override_settings(STORAGES=s3_server.storages(name, read_timeout=1, max_attempts=1)):
        job_id = upload(api, ndjson(orders(30, invalid_every=7)[0])).json()["id"]
        job_run(job_id=job_id)
        s3_server.pause()
        try:
            response = api.get(f"/api/v1/jobs/{job_id}/errors")
        finally:
            s3_server.resume()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"


def test_finished_jobs_files_are_deleted_after_the_retention_period(
    db: None, bucket: str, s3_server: S3Server, settings: Any
) -> None:
    api = make_api()
    job_id = upload(api, ndjson(orders(30, invalid_every=7)[0])).json()["id"]
    job_run(job_id=job_id)
    fresh = upload(api, ndjson(orders(30, invalid_every=7)[0])).json()["id"]
    job_run(job_id=fresh)
    assert len(s3_server.keys(bucket)) == 2  # two reports
    settings.VALIDATION_RETENTION_DAYS = 7
    ValidationJob.objects.filter(pk=job_id).update(finished_at=timezone.now() - timedelta(days=7, minutes=1))

    assert jobs_recover().expired == [job_id]
    assert s3_server.keys(bucket) == [ValidationJob.objects.get(pk=fresh).report]
    kept = api.get(f"/api/v1/jobs/{job_id}").json()
    assert kept["status"] == "succeeded" and kept["summary"] == {"valid": 26, "invalid": 4}  # the row stays
    gone = api.get(f"/api/v1/jobs/{job_id}/errors")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "report_expired"
    assert jobs_recover().expired == []  # once
