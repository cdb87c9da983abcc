"""Idempotency-Key in process: replays byte for byte, conflicts, bad keys,
what is kept and what is charged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from idempotency.models import IdempotencyKey
from idempotency.services import keys_expire
from tests.validation.conftest import Api, stored_files
from tests.validation.data import ndjson, orders
from tests.validation.test_jobs_api import NDJSON, make_api, units, upload
from validation.models import ValidationJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(db: None) -> Api:
    return make_api(rate_limits="1000/m")


def test_a_retried_upload_is_one_job_charged_once_and_replayed_byte_for_byte(order: Api, media_root: Path) -> None:
    body = ndjson(orders(20, invalid_every=5)[0])
    first = upload(order, body, HTTP_IDEMPOTENCY_KEY="upload-1")
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first
    again = upload(order, body, HTTP_IDEMPOTENCY_KEY="upload-1")
    assert again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again["Location"] == first["Location"]
    assert again["Content-Type"] == "application/json"
    assert "RateLimit" in again  # the replay's own, current headers
    assert again["Original-Request-ID"] == first["X-Request-ID"] != again["X-Request-ID"]
    assert ValidationJob.objects.count() == 1
    assert units(order) == 20
    assert len(stored_files(media_root)) == 1


def test_the_same_key_for_another_request_is_422(order: Api) -> None:
    body = ndjson(orders(3, invalid_every=5)[0])
    assert upload(order, body, HTTP_IDEMPOTENCY_KEY="k").status_code == 202
    other = upload(order, body + body, HTTP_IDEMPOTENCY_KEY="k")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    path = order.post("/api/v1/validate", {"schema": "order/1", "instance": {}}, HTTP_IDEMPOTENCY_KEY="k")
    assert path.status_code == 422
    assert ValidationJob.objects.count() == 1
    assert units(order) == 3


def test_a_key_is_per_account(order: Api) -> None:
    other = make_api()
    body = ndjson(orders(2, invalid_every=5)[0])
    assert upload(order, body, HTTP_IDEMPOTENCY_KEY="shared").status_code == 202
    response = upload(other, body, HTTP_IDEMPOTENCY_KEY="shared")
    assert response.status_code == 202 and "Idempotent-Replayed" not in response
    assert ValidationJob.objects.count() == 2


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_400_and_nothing_runs(order: Api, key: str) -> None:
    response = order.post(
        "/api/v1/validate", {"schema": "order/1", "instance": {}}, HTTP_IDEMPOTENCY_KEY=key.encode().decode("latin-1")
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert units(order) == 0


def test_a_key_of_255_characters_is_accepted(order: Api) -> None:
    response = order.post("/api/v1/validate", {"schema": "order/1", "instance": {}}, HTTP_IDEMPOTENCY_KEY="k" * 255)
    assert response.status_code == 200


def test_validate_replays_its_result_without_charging_units(order: Api) -> None:
    payload = {"schema": "order/1", "instances": [{"id": 1}, {"id": 2, "qty": 1, "email": "a@b.co"}]}
    first = order.post("/api/v1/validate", payload, HTTP_IDEMPOTENCY_KEY="v")
    again = order.post("/api/v1/validate", payload, HTTP_IDEMPOTENCY_KEY="v")
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert units(order) == 2


def test_a_client_error_is_kept_and_replayed(order: Api) -> None:
    payload = {"name": "bad", "version": "1"}  # no "schema": 400 invalid_request
    first = order.post("/api/v1/schemas", payload, HTTP_IDEMPOTENCY_KEY="s")
    assert first.status_code == 400
    again = order.post("/api/v1/schemas", payload, HTTP_IDEMPOTENCY_KEY="s")
    assert again.status_code == 400 and again.content == first.content
    assert again["Idempotent-Replayed"] == "true"


def test_a_429_is_not_kept_and_the_retry_runs(db: None) -> None:
    api = make_api(quotas="3/day")
    payload = {"schema": "order/1", "instances": [{"id": n} for n in range(4)]}
    refused = api.post("/api/v1/validate", payload, HTTP_IDEMPOTENCY_KEY="q")
    assert refused.status_code == 429
    assert not IdempotencyKey.objects.exists()
    payload["instances"] = payload["instances"][:3]
    assert api.post("/api/v1/validate", payload, HTTP_IDEMPOTENCY_KEY="q").status_code == 200


def test_a_running_first_request_makes_the_retry_409(order: Api) -> None:
    body: dict[str, Any] = {"schema": "order/1", "instance": {}}
    assert order.post("/api/v1/validate", body, HTTP_IDEMPOTENCY_KEY="r").status_code == 200
    IdempotencyKey.objects.update(response_status=None)  # as if it still ran
    response = order.post("/api/v1/validate", body, HTTP_IDEMPOTENCY_KEY="r")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert response["Retry-After"] == "1"


def test_a_claim_whose_request_died_is_taken_over(order: Api) -> None:
    body: dict[str, Any] = {"schema": "order/1", "instance": {}}
    assert order.post("/api/v1/validate", body, HTTP_IDEMPOTENCY_KEY="d").status_code == 200
    IdempotencyKey.objects.update(response_status=None, created_at=timezone.now() - timedelta(minutes=5))
    response = order.post("/api/v1/validate", body, HTTP_IDEMPOTENCY_KEY="d")
    assert response.status_code == 200 and "Idempotent-Replayed" not in response
    assert IdempotencyKey.objects.get().response_status == 200


def test_expired_keys_are_deleted_and_run_again(order: Api) -> None:
    body: dict[str, Any] = {"schema": "order/1", "instance": {}}
    assert order.post("/api/v1/validate", body, HTTP_IDEMPOTENCY_KEY="e").status_code == 200
    row = IdempotencyKey.objects.get()
    assert row.expires_at - row.created_at == timedelta(hours=24)
    assert keys_expire() == 0
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert keys_expire() == 1
    again = order.post("/api/v1/validate", body, HTTP_IDEMPOTENCY_KEY="e")
    assert again.status_code == 200 and "Idempotent-Replayed" not in again


def test_get_and_requests_without_the_header_are_untouched(order: Api) -> None:
    assert order.get("/api/v1/jobs", HTTP_IDEMPOTENCY_KEY="g").status_code == 200
    body = ndjson(orders(2, invalid_every=5)[0])
    upload(order, body)
    upload(order, body)
    assert ValidationJob.objects.count() == 2
    assert not IdempotencyKey.objects.exists()


def test_a_chunked_upload_is_fingerprinted_and_replayed(order: Api) -> None:
    from tests.validation.test_jobs_api import Chunked

    data = ndjson(orders(30, invalid_every=5)[0])

    def chunked() -> Any:
        return {"wsgi.input": Chunked(data), "wsgi.input_terminated": True, "CONTENT_LENGTH": ""}

    first = upload(order, b"", HTTP_IDEMPOTENCY_KEY="c", **chunked())
    assert first.status_code == 202 and first.json()["records"] == 30
    again = upload(order, b"", HTTP_IDEMPOTENCY_KEY="c", **chunked())
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert units(order) == 30
    assert NDJSON
