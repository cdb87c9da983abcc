"""Job reads stay small: the summary and links by default, the first errors
on ``?include=errors``, every error naming its record with ``record_kind``."""

from __future__ import annotations

import orjson
import pytest

from tests.validation.conftest import Api
from tests.validation.data import csv_text, ndjson, orders
from tests.validation.test_jobs_api import make_api, upload
from validation.runner import job_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(db: None) -> Api:
    return make_api()


def _report(api: Api, url: str) -> list[dict]:
    response = api.get(url)
    assert response.status_code == 200, response.content
    return [orjson.loads(line) for line in b"".join(response.streaming_content).splitlines()]


@pytest.mark.parametrize(
    ("content_type", "body", "kind", "records"),
    [
        ("application/x-ndjson", ndjson(orders(10, invalid_every=5)[0]), "line", [5, 10]),
        ("application/json", orjson.dumps(orders(10, invalid_every=5)[0]), "index", [4, 9]),
        ("text/csv", csv_text(orders(10, invalid_every=5)[0]), "row", [5, 10]),
    ],
)
def test_each_format_names_its_records_and_says_how(
    api: Api, content_type: str, body: bytes | str, kind: str, records: list[int]
) -> None:
    data = body.encode() if isinstance(body, str) else body
    job_id = upload(api, data, content_type=content_type).json()["id"]
    assert job_run(job_id=job_id) == "succeeded"
    job = api.get(f"/api/v1/jobs/{job_id}")
    assert job.status_code == 200
    shown = job.json()
    assert "errors" not in shown  # small: the errors are behind errors_url
    assert shown["record_kind"] == kind
    assert shown["summary"] == {"valid": 8, "invalid": 2}
    lines = _report(api, shown["errors_url"])
    assert [(line["record"], line["record_kind"]) for line in lines] == [(n, kind) for n in records]
    included = api.get(f"/api/v1/jobs/{job_id}?include=errors").json()
    assert [(e["record"], e["record_kind"]) for e in included["errors"]] == [(n, kind) for n in records]


def test_include_names_only_what_exists(api: Api) -> None:
    job_id = upload(api, ndjson(orders(3, invalid_every=5)[0])).json()["id"]
    response = api.get(f"/api/v1/jobs/{job_id}?include=errors,everything")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "include"}


def test_a_job_without_a_report_yet_has_no_errors_url(api: Api) -> None:
    job_id = upload(api, ndjson(orders(3, invalid_every=5)[0])).json()["id"]
    shown = api.get(f"/api/v1/jobs/{job_id}").json()
    assert shown["status"] == "queued" and shown["errors_url"] is None
    assert api.get(f"/api/v1/jobs/{job_id}/errors").json()["error"]["code"] == "report_unavailable"


def test_the_report_is_text_plain_for_a_client_that_prefers_it(api: Api) -> None:
    job_id = upload(api, ndjson(orders(10, invalid_every=5)[0])).json()["id"]
    assert job_run(job_id=job_id) == "succeeded"
    plain = api.get(f"/api/v1/jobs/{job_id}/errors", HTTP_ACCEPT="text/plain")
    assert plain["Content-Type"] == "text/plain; charset=utf-8"
    default = api.get(f"/api/v1/jobs/{job_id}/errors")
    assert default["Content-Type"] == "application/x-ndjson"
    assert b"".join(plain.streaming_content) == b"".join(default.streaming_content)
