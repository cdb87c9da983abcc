"""X-Request-ID: on every answer, in the request's log lines and error bodies."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.test import Client, override_settings

from project.request_id import RequestIdFilter, current_request_id
from tests.conftest import bearer

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/ping", "/api/v1/nowhere", "/health", "/health/live", "/admin/login/"])
def test_every_answer_has_a_request_id(path: str) -> None:
    response = Client().get(path)
    assert GENERATED.fullmatch(response["X-Request-ID"])


@pytest.mark.django_db
def test_each_request_gets_its_own_id() -> None:
    client = Client()
    assert len({client.get("/health/live")["X-Request-ID"] for _ in range(5)}) == 5


@pytest.mark.django_db
@pytest.mark.parametrize("sent", ["abc", "7f3c2a9e-1b4d-4c8e-9a6f-0d2b5e8c1a3f", "req:42/retry=1+a@b.c_d", "x" * 128])
def test_a_sane_client_id_is_kept(sent: str, api_key: str) -> None:
    response = Client().get("/api/v1/ping", HTTP_X_REQUEST_ID=sent, **bearer(api_key))
    assert response.status_code == 200
    assert response["X-Request-ID"] == sent


@pytest.mark.django_db
@pytest.mark.parametrize("sent", ["", "x" * 129, "two words", "a\tb", "<script>", "é", "a,b", '"quoted"'])
def test_an_odd_client_id_is_replaced(sent: str) -> None:
    response = Client().get("/health/live", HTTP_X_REQUEST_ID=sent)
    assert GENERATED.fullmatch(response["X-Request-ID"])


@pytest.mark.django_db
def test_every_error_body_names_the_request() -> None:
    client = Client()
    unauthorized = client.get("/api/v1/ping", HTTP_X_REQUEST_ID="support-me")
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["request_id"] == "support-me"
    missing = client.get("/api/v1/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["request_id"] == missing["X-Request-ID"]


@pytest.mark.django_db
def test_the_request_log_lines_carry_the_id(caplog: Any, api_key: str) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with (
        override_settings(ROOT_URLCONF="tests.urls_errors"),
        caplog.at_level(logging.ERROR, logger="django.request"),
    ):
        response = Client(raise_request_exception=False).get(
            "/api/v1/boom", HTTP_X_REQUEST_ID="trace-7", **bearer(api_key)
        )
    assert response.status_code == 500 and response.json()["error"]["request_id"] == "trace-7"
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.request_id == "trace-7"  # type: ignore[attr-defined]
    assert current_request_id() is None  # nothing left behind for the next request


def test_the_text_format_shows_the_id_only_within_a_request() -> None:
    from django.conf import settings

    formatter = logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"])
    record = logging.LogRecord("tollgate.api", logging.WARNING, __file__, 1, "hello", None, None)
    RequestIdFilter().filter(record)
    assert formatter.format(record).endswith(" WARNING tollgate.api: hello")
    record.request_id = "abc"
    RequestIdFilter().filter(record)
    assert formatter.format(record).endswith(" WARNING tollgate.api [abc]: hello")
