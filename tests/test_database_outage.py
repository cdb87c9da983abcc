"""The outage state behind the database's 503s: one log line per outage, a
breaker that lets one probe through, and the API's answer, on any database."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import OperationalError

from project import database
from project.database import BREAKER_SECONDS, PROBE_LEASE_SECONDS, QUIET_SECONDS, Outage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outage(clock: Clock) -> Outage:
    return Outage(clock=clock)


def lines(caplog: Any, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tollgate.database" and r.levelno == level]


def test_an_outage_is_logged_once_and_its_end_once(outage: Outage, clock: Clock, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="tollgate.database")
    for _ in range(50):
        outage.failed(OperationalError("connection refused"))
        clock.now += 0.1
    outage.answered()  # too soon: a slow database answers some queries
    outage.failed(OperationalError("canceling statement due to statement timeout"))
    assert lines(caplog, logging.WARNING) == [
        "Database unavailable (OperationalError: connection refused); "
        "API answers are 503 service_unavailable until it is back"
    ]
    clock.now += QUIET_SECONDS
    outage.answered()
    outage.answered()
    assert lines(caplog, logging.INFO) == ["Database answering again, after 51 failed call(s) over 5.0 s"]
    assert not outage.active
    outage.failed(OperationalError("again"))
    assert len(lines(caplog, logging.WARNING)) == 2  # a new outage


def test_the_breaker_lets_one_probe_through_when_its_time_is_up(outage: Outage, clock: Clock) -> None:
    assert outage.allow()
    outage.trip(OperationalError("connection timeout expired"))
    assert outage.cause == "OperationalError: connection timeout expired"
    assert not outage.allow()
    clock.now += BREAKER_SECONDS
    assert outage.allow()  # this process probes...
    assert not outage.allow()  # ...the others still answer at once
    clock.now += PROBE_LEASE_SECONDS
    assert outage.allow()  # a prober that never reported is replaced
    outage.answered()
    assert outage.allow() and outage.allow()


def test_a_database_error_in_a_view_is_503_service_unavailable(api_key: str, monkeypatch: Any, client: Any) -> None:
    def down(**kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("validation.views.schema_get", down)
    response = client.get("/api/v1/schemas/order/1", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response["Retry-After"] == "2"
    assert database.outage.active
