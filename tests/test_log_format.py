"""``LOG_FORMAT=json``: one JSON object per line, redacted like the text
format; and the request lines (``LOG_REQUESTS``) with their fields."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from django.test import Client
from django.test.utils import override_settings

from project.log_format import JsonFormatter
from project.redis import cache_config
from project.reporting import RedactSecretsFilter
from project.request_observer import RequestObserverMiddleware
from tests.conftest import bearer
from tests.factories import issue_key
from tests.processes import database_url, gunicorn, service_env
from tests.redis_server import RedisServer

PASSWORD = "s3cret-redis-pw-4711"


def _json_handler() -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecretsFilter())
    return handler, stream


def test_a_json_line_has_its_fields_and_no_secret() -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:6390/0"
    handler, stream = _json_handler()
    logger = logging.getLogger("tollgate.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with override_settings(REDIS_URL=url):
            logger.warning("could not reach %s", url, extra={"request_id": "req-123", "account_id": 7})
            try:
                raise ConnectionError(f"refused by {url} (password {PASSWORD})")
            except ConnectionError:
                logger.exception("charge failed")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert first["level"] == "WARNING" and first["logger"] == "tollgate.test-json"
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert first["message"] == "could not reach redis://:***@127.0.0.1:6390/0"
    assert (first["request_id"], first["account_id"]) == ("req-123", 7)
    assert "route" not in first  # fields a record does not carry are left out
    assert second["level"] == "ERROR" and second["message"] == "charge failed"
    assert "ConnectionError" in second["exception"] and "Traceback" in second["exception"]
    assert PASSWORD not in stream.getvalue()


@pytest.mark.django_db
def test_the_request_line_carries_route_status_duration_and_account(client: Client, settings: Any) -> None:
    settings.LOG_REQUESTS = True
    issued = issue_key()
    handler, stream = _json_handler()
    logger = logging.getLogger("tollgate.request")
    logger.addHandler(handler)
    try:
        # The middleware reads LOG_REQUESTS when it is built: a new handler chain.
        with override_settings(LOG_REQUESTS=True):
            client.handler.load_middleware()
            assert client.get("/api/v1/ping", **bearer(issued.key)).status_code == 200
            assert client.get("/api/v1/ping").status_code == 401
    finally:
        logger.removeHandler(handler)
        client.handler.load_middleware()
    admitted, refused = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert admitted["logger"] == "tollgate.request" and admitted["level"] == "INFO"
    assert admitted["message"] == "GET /api/v1/ping 200"
    assert (admitted["route"], admitted["method"], admitted["status"]) == ("api/v1/ping", "GET", 200)
    assert admitted["account_id"] == issued.api_key.account_id and admitted["duration_ms"] > 0
    assert refused["status"] == 401 and "account_id" not in refused


def test_request_lines_are_off_by_default_with_text_logs(settings: Any) -> None:
    settings.LOG_REQUESTS = False
    assert RequestObserverMiddleware(lambda request: None).log_requests is False  # type: ignore[arg-type,return-value]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_gunicorn_with_json_logs_writes_only_json_lines_and_no_password(tmp_path: Path) -> None:
    server = RedisServer(password=PASSWORD).start()
    log_path = tmp_path / "gunicorn.log"
    try:
        with override_settings(REDIS_URL=server.url, CACHES={"default": cache_config(server.url)}):
            issued = issue_key()
            env = service_env(REDIS_URL=server.url, DATABASE_URL=database_url(), LOG_FORMAT="json")
            with gunicorn(env, workers=2, log_path=log_path) as base:
                assert httpx.get(f"{base}/api/v1/ping", headers={"X-API-Key": issued.key}).status_code == 200
                assert httpx.get(f"{base}/api/v1/nothing-here").status_code == 404
                server.kill()  # a warning line, while Redis is gone
                assert httpx.get(f"{base}/api/v1/ping", headers={"X-API-Key": issued.key}).status_code == 503
    finally:
        server.stop()
    text = log_path.read_text()
    lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]  # each one parses
    assert PASSWORD not in text
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert any(line["logger"] == "gunicorn.error" for line in lines)  # gunicorn's own lines too
    assert any(line["logger"] == "tollgate.quotas" and line["level"] == "WARNING" for line in lines)
    requests = [line for line in lines if line["logger"] == "tollgate.request" and line["route"] != "health/live"]
    assert [(line["route"], line["status"]) for line in requests] == [
        ("api/v1/ping", 200),
        ("unmatched", 404),
        ("api/v1/ping", 503),
    ]
    assert requests[0]["account_id"] == issued.api_key.account_id
    assert all(len(line["request_id"]) == 32 for line in requests)  # project.request_id's
