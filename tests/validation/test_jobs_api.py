"""The job endpoints in process: uploads streamed, counted, limited and
reserved; reading, listing and cancelling; isolation between accounts.
The job itself runs inline (``job_run``) where a test needs it done."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.test.client import MULTIPART_CONTENT, encode_multipart

from quotas.backends import get_backend
from quotas.models import ApiKey
from tests.conftest import bearer
from tests.factories import issue_key
from tests.validation.conftest import ORDER_SCHEMA, Api, stored_files
from tests.validation.data import csv_text, ndjson, orders
from validation.models import ValidationJob
from validation.runner import job_run

NDJSON = "application/x-ndjson"


class Exploding(io.RawIOBase):
    """A request body that must never be read."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")

    readinto = read  # type: ignore[assignment]


class Chunked(io.RawIOBase):
    """A de-chunked body as gunicorn hands it over (no Content-Length)."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.data.read(min(size, 4096) if size and size > 0 else 4096)
        self.read_bytes += len(chunk)
        return chunk


def account_of(api: Api) -> int:
    return ApiKey.objects.get(prefix=api.key.split("_")[1]).account_id


def units(api: Api) -> int:
    account_id = account_of(api)
    return get_backend().usage([account_id])[account_id]["day"]


def make_api(**plan: Any) -> Api:
    api = Api(issue_key(**{"rate_limits": "", "quotas": "100000/day", **plan}).key)
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    return api


@pytest.fixture
def order(db: None) -> Api:
    return make_api()


def upload(api: Api, body: bytes, content_type: str = NDJSON, query: str = "?schema=order/1", **extra: Any) -> Any:
    # CONTENT_TYPE is given explicitly: the test client leaves it out for an empty body.
    extra.setdefault("CONTENT_TYPE", content_type)
    return api.client.post(f"/api/v1/jobs{query}", body, content_type=content_type, **extra)


def test_a_raw_upload_is_stored_counted_reserved_and_queued(order: Api, media_root: Path) -> None:
    records, _invalid = orders(25, invalid_every=5)
    response = upload(order, ndjson(records))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["records"] == 25
    assert response["Location"] == body["url"] == f"http://testserver/api/v1/jobs/{body['id']}"
    job = ValidationJob.objects.get(pk=body["id"])
    assert (job.total, job.units_reserved, job.format) == (25, 25, "ndjson")
    assert stored_files(media_root) == [job.upload]
    assert units(order) == 25

    assert job_run(job_id=job.pk) == "succeeded"
    done = order.get(body["url"]).json()
    assert done["status"] == "succeeded"
    assert done["progress"] == {"processed": 25, "total": 25}
    assert done["summary"] == {"valid": 20, "invalid": 5}
    assert [e["record"] for e in done["errors"]] == [5, 10, 15, 20, 25]
    assert done["units"] == {"reserved": 25, "refunded": 0}
    report = order.get(f"{body['url']}/errors")
    assert report["Content-Type"] == "application/x-ndjson"
    lines = b"".join(report.streaming_content).decode().splitlines()
    assert [line.split(",")[0] for line in lines] == [f'{{"record":{n}' for n in (5, 10, 15, 20, 25)]
    assert stored_files(media_root) == [ValidationJob.objects.get().report]  # the upload is gone, the report stays


def test_content_length_over_the_plan_is_413_before_reading(db: None, media_root: Path) -> None:
    api = make_api(max_upload_bytes=1000)
    response = upload(api, b"", **{"wsgi.input": Exploding(), "CONTENT_LENGTH": "1001"})
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "payload_too_large",
        "message": "The upload is larger than the plan allows.",
        "details": {"max_upload_bytes": 1000},
        "request_id": response["X-Request-ID"],
    }
    assert stored_files(media_root) == []
    assert units(api) == 0


def test_a_chunked_body_over_the_plan_is_413_while_streaming(db: None, media_root: Path) -> None:
    api = make_api(max_upload_bytes=10_000)
    body = Chunked(ndjson(orders(1000, invalid_every=10)[0]))  # ~60 kB
    response = upload(api, b"", **{"wsgi.input": body, "wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
    assert response.status_code == 413
    assert body.read_bytes < 20_000  # it stopped soon after the limit
    assert stored_files(media_root) == []
    assert not ValidationJob.objects.exists()


def test_a_chunked_body_within_the_plan_is_accepted(order: Api) -> None:
    body = Chunked(ndjson(orders(300, invalid_every=10)[0]))
    response = upload(order, b"", **{"wsgi.input": body, "wsgi.input_terminated": True, "CONTENT_LENGTH": ""})
    assert response.status_code == 202
    assert response.json()["records"] == 300


def test_not_enough_quota_is_429_and_nothing_is_stored(db: None, media_root: Path) -> None:
    api = make_api(quotas="10/day")
    response = upload(api, ndjson(orders(11, invalid_every=5)[0]))
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert "Retry-After" in response
    assert stored_files(media_root) == []
    assert not ValidationJob.objects.exists()
    assert units(api) == 0
    assert upload(api, ndjson(orders(10, invalid_every=5)[0])).status_code == 202


def test_a_used_up_quota_is_429_before_reading_the_upload(db: None, media_root: Path) -> None:
    api = make_api(quotas="3/day")
    assert upload(api, ndjson(orders(3, invalid_every=5)[0])).status_code == 202
    response = upload(api, b"", **{"wsgi.input": Exploding(), "CONTENT_LENGTH": "100"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert int(response["Retry-After"]) > 0


def test_multipart_uploads_stream_the_file_part(order: Api, media_root: Path) -> None:
    table = csv_text(orders(40, invalid_every=8)[0])
    file = io.BytesIO(table)
    file.name = "orders.csv"
    body = encode_multipart("BoUnDaRy", {"file": file, "schema": "order/1"})
    response = order.client.post("/api/v1/jobs", body, content_type="multipart/form-data; boundary=BoUnDaRy")
    assert response.status_code == 202, response.content
    job = ValidationJob.objects.get()
    assert (job.format, job.total) == ("csv", 40)
    assert job_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    assert (job.valid_count, job.invalid_count) == (35, 5)


def test_multipart_without_a_schema_is_400_and_leaves_nothing(order: Api, media_root: Path) -> None:
    file = io.BytesIO(ndjson(orders(5, invalid_every=5)[0]))
    file.name = "orders.ndjson"
    response = order.client.post("/api/v1/jobs", {"file": file}, content_type=MULTIPART_CONTENT)
    assert response.status_code == 400
    assert stored_files(media_root) == []


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"a,b\n1,2\n", "text/plain", 415, "unsupported_media_type"),
        (b'{"not": "an array"}', "application/json", 400, "invalid_upload"),
        (b"[1, 2", "application/json", 400, "invalid_upload"),
        (b"", "text/csv", 400, "invalid_upload"),
        (b"\n\n", NDJSON, 400, "invalid_upload"),
    ],
)
def test_unreadable_uploads_are_refused_and_cost_no_units(
    order: Api, media_root: Path, body: bytes, content_type: str, status: int, code: str
) -> None:
    response = upload(order, body, content_type)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert stored_files(media_root) == []
    assert units(order) == 0


def test_an_unknown_schema_is_404_before_the_upload_is_read(order: Api) -> None:
    response = upload(order, b"", query="?schema=nope/1", **{"wsgi.input": Exploding(), "CONTENT_LENGTH": "10"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "schema_not_found"


def test_jobs_are_listed_newest_first_with_pagination(order: Api) -> None:
    ids = [upload(order, ndjson(orders(2, invalid_every=5)[0])).json()["id"] for _ in range(3)]
    page = order.get("/api/v1/jobs?page_size=2").json()
    assert page["count"] == 3
    assert [job["id"] for job in page["results"]] == ids[::-1][:2]
    assert order.get(page["next"]).json()["results"][0]["id"] == ids[0]
    assert order.get("/api/v1/jobs?status=succeeded").json()["count"] == 0


def test_another_accounts_job_is_404(order: Api, db: None) -> None:
    job_id = upload(order, ndjson(orders(2, invalid_every=5)[0])).json()["id"]
    other = Client(**bearer(issue_key().key))
    for method, path in (("get", ""), ("get", "/errors"), ("delete", "")):
        response = getattr(other, method)(f"/api/v1/jobs/{job_id}{path}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"
    assert other.get("/api/v1/jobs").json()["count"] == 0
    assert order.get("/api/v1/jobs/not-a-uuid").status_code == 404


def test_cancelling_a_queued_job_refunds_it_and_deletes_the_upload(order: Api, media_root: Path) -> None:
    job_id = upload(order, ndjson(orders(20, invalid_every=5)[0])).json()["id"]
    assert units(order) == 20
    response = order.client.delete(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["units"] == {"reserved": 20, "refunded": 20}
    assert units(order) == 0
    assert stored_files(media_root) == []
    assert order.client.delete(f"/api/v1/jobs/{job_id}").status_code == 200  # idempotent
    assert job_run(job_id=job_id) == "skipped"
    assert order.get(f"/api/v1/jobs/{job_id}/errors").json()["error"]["code"] == "report_unavailable"


def test_a_finished_job_cannot_be_cancelled(order: Api) -> None:
    job_id = upload(order, ndjson(orders(3, invalid_every=5)[0])).json()["id"]
    job_run(job_id=job_id)
    response = order.client.delete(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_finished"


def test_the_report_is_unavailable_until_the_job_succeeds(order: Api) -> None:
    job_id = upload(order, ndjson(orders(3, invalid_every=5)[0])).json()["id"]
    assert order.get(f"/api/v1/jobs/{job_id}/errors").status_code == 409
    job_run(job_id=job_id)
    report = order.get(f"/api/v1/jobs/{job_id}/errors")
    assert report.status_code == 200 and report.content == b""  # every record valid


def test_any_storage_backend_works_by_configuration(order: Api, settings: Any, media_root: Path) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    records, invalid = orders(50, invalid_every=7)
    job_id = upload(order, orjson_array(records), "application/json").json()["id"]
    assert job_run(job_id=job_id) == "succeeded"
    job = order.get(f"/api/v1/jobs/{job_id}").json()
    assert job["summary"] == {"valid": 50 - len(invalid), "invalid": len(invalid)}
    report = b"".join(order.get(f"/api/v1/jobs/{job_id}/errors").streaming_content)
    assert len(report.splitlines()) == len(invalid)
    assert stored_files(media_root) == []  # nothing touched the filesystem


def orjson_array(records: list[Any]) -> bytes:
    import orjson

    return orjson.dumps(records)


def test_operators_see_schemas_and_jobs_read_only_in_the_admin(order: Api, admin_client: Any) -> None:
    job_id = upload(order, ndjson(orders(3, invalid_every=5)[0])).json()["id"]
    listing = admin_client.get("/admin/validation/validationjob/")
    assert listing.status_code == 200 and job_id in listing.content.decode()
    assert admin_client.get("/admin/validation/schema/").status_code == 200
    assert admin_client.get("/admin/validation/validationjob/add/").status_code == 403


@pytest.mark.parametrize("query", ["?page=1&page=2", "?page_size=0", "?status=done", "?status=queued&status=failed"])
def test_list_parameters_are_checked(order: Api, query: str) -> None:
    response = order.get(f"/api/v1/jobs{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_a_job_that_cannot_be_recorded_keeps_neither_file_nor_units(
    order: Api, media_root: Path, monkeypatch: Any
) -> None:
    from django.db import DatabaseError

    def fail(**kwargs: Any) -> None:
        raise DatabaseError("the database went away")

    monkeypatch.setattr("validation.submit.job_create", fail)
    with pytest.raises(DatabaseError):
        upload(order, ndjson(orders(20, invalid_every=5)[0]))
    assert stored_files(media_root) == []
    assert units(order) == 0


def test_a_schema_reference_that_cannot_exist_is_404(order: Api, media_root: Path) -> None:
    response = upload(order, b"", query="?schema=a%00b/1", **{"wsgi.input": Exploding(), "CONTENT_LENGTH": "10"})
    assert response.status_code == 404
    file = io.BytesIO(b'{"a": 1}\n')
    file.name = "x.ndjson"
    body = encode_multipart("BoUnDaRy", {"file": file, "schema": "a\x00b/1"})
    response = order.client.post("/api/v1/jobs", body, content_type="multipart/form-data; boundary=BoUnDaRy")
    assert response.status_code == 404
    assert stored_files(media_root) == []
