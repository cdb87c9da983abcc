"""The web and the worker share nothing but the database, Redis and a bucket,
as on Heroku and Render: a real gunicorn and a real ``rqworker``, each in a
working directory of its own with a ``MEDIA_ROOT`` of its own, against a real
S3-compatible HTTP server (moto) on a loopback port. NDJSON, JSON-array and
CSV jobs of a few MB each give exact results, and nothing touches either
process's disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.factories import issue_key
from tests.processes import database_url, gunicorn, service_env
from tests.redis_server import RedisServer
from tests.s3_server import S3Server
from tests.validation.conftest import ORDER_SCHEMA
from tests.validation.data import csv_text, ndjson, orders
from tests.validation.stack import FAST_RECOVERY, Client, worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BUCKET = "tollgate-share-nothing"


@pytest.fixture(scope="module")
def places(tmp_path_factory: Any) -> dict[str, Path]:
    """A working directory and a MEDIA_ROOT for each process."""
    return {name: tmp_path_factory.mktemp(name) for name in ("web-cwd", "web-media", "worker-cwd", "worker-media")}


@pytest.fixture(scope="module")
def stack(
    django_db_setup: None, django_db_blocker: Any, s3_server: S3Server, places: dict[str, Path]
) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    server = RedisServer().start()
    s3_server.create_bucket(BUCKET)
    with django_db_blocker.unblock():
        url = database_url()
    shared = {"REDIS_URL": server.url, "DATABASE_URL": url, **s3_server.env(BUCKET, AWS_LOCATION="tenant-a")}
    web = service_env(**shared, MEDIA_ROOT=str(places["web-media"]))
    work = service_env(**shared, MEDIA_ROOT=str(places["worker-media"]), **FAST_RECOVERY)
    yield web, work
    server.stop()


@pytest.fixture(scope="module")
def base(stack: tuple[dict[str, str], dict[str, str]], places: dict[str, Path]) -> Iterator[str]:
    with gunicorn(stack[0], workers=2, cwd=places["web-cwd"]) as url:
        yield url


def test_jobs_of_every_format_run_with_nothing_shared_but_the_bucket(
    base: str, stack: tuple[dict[str, str], dict[str, str]], places: dict[str, Path], s3_server: S3Server
) -> None:
    api = Client(base, issue_key(rate_limits="1000/s", quotas="5000000/day", max_upload_bytes=50 << 20).key)
    assert api.register("order", "1", ORDER_SCHEMA).status_code == 201
    records, invalid = orders(80_000, invalid_every=400)
    uploads = {
        "ndjson": (ndjson(records), "application/x-ndjson", [n + 1 for n in sorted(invalid)]),
        "json": (orjson.dumps(records), "application/json", sorted(invalid)),
        "csv": (csv_text(records), "text/csv", [n + 1 for n in sorted(invalid)]),
    }
    assert all(len(body) > 2_000_000 for body, _, _ in uploads.values())  # a few MB each

    with worker(stack[1], cwd=places["worker-cwd"]):
        ids = {}
        for fmt, (body, content_type, _) in uploads.items():
            response = api.upload(body, schema="order/1", content_type=content_type)
            assert response.status_code == 202, response.text
            ids[fmt] = response.json()["id"]
        done = {fmt: api.finished(job_id) for fmt, job_id in ids.items()}

    for fmt, (_, _, expected) in uploads.items():
        job = done[fmt]
        assert job["status"] == "succeeded", job
        assert job["summary"] == {"valid": 80_000 - len(invalid), "invalid": len(invalid)}
        assert [orjson.loads(line)["record"] for line in api.errors(job["id"])] == expected
    assert api.usage() == {"daily-quota": 240_000}
    # Only the reports remain, under the key prefix; the uploads were deleted
    # once their jobs finished; neither process wrote anything to its disk.
    keys = s3_server.keys(BUCKET)
    assert len(keys) == 3 and all(key.startswith("tenant-a/reports/") for key in keys)
    assert [path for place in places.values() for path in place.rglob("*")] == []
