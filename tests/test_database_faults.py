"""The database down, hung or too slow under load, on a private PostgreSQL cluster, with
the real gunicorn (two sync workers): every ``/api/`` answer is 200 or 503
``service_unavailable`` (never 500), no request waits much longer than the
database timeouts, ``/health`` says 503 while the database is away and 200
once it is back, and the outage is logged once, not once per request."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from project.database import QUIET_SECONDS
from tests.postgres_server import PostgresServer
from tests.processes import ROOT, gunicorn, service_env
from tests.redis_server import RedisServer
from tests.validation.stack import FAST_RECOVERY, Client, wait_for, worker

# Load tests that measure a fault: one at a time (make test: --dist loadgroup).
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("fault-under-load")]

# Short timeouts, so that the test is quick; the production defaults are 2 s
# and 10 s (project.settings).
CONNECT_TIMEOUT = 2
STATEMENT_TIMEOUT = 2
# The longest any request may take: a statement's deadline (timeout + 1 s)
# while the server hangs, behind at most one other request on its worker,
# and slack for two busy cores.
LONGEST = 2 * (STATEMENT_TIMEOUT + 1) + CONNECT_TIMEOUT + 4

SEED = """
from quotas.models import Account
from quotas.services import api_key_create, plan_set
plan, _ = plan_set(name="faults", rate_limits=[], quotas=[], max_upload_mb=10, max_sync_instances=10)
print(api_key_create(account=Account.objects.create(name="faults", plan=plan), label="faults").key)
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[PostgresServer, str]]:
    """The cluster, migrated, and an API key on it."""
    server = PostgresServer().start()
    env = service_env(DATABASE_URL=server.create_database("tollgate"))
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
    seeded = subprocess.run([*manage, "shell", "-c", SEED], cwd=ROOT, env=env, check=True, capture_output=True)
    yield server, seeded.stdout.decode().strip().splitlines()[-1]
    server.remove()


@pytest.fixture(scope="module")
def env(cluster: tuple[PostgresServer, str], tmp_path_factory: Any) -> Iterator[dict[str, str]]:
    server, _ = cluster
    redis = RedisServer().start()
    yield service_env(
        REDIS_URL=redis.url,
        DATABASE_URL=server.url("tollgate"),
        MEDIA_ROOT=str(tmp_path_factory.mktemp("media")),
        DATABASE_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
        DATABASE_STATEMENT_TIMEOUT=str(STATEMENT_TIMEOUT),
        DATABASE_WORKER_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
        DATABASE_WORKER_STATEMENT_TIMEOUT=str(STATEMENT_TIMEOUT),
        **FAST_RECOVERY,
    )
    redis.stop()


@pytest.fixture(scope="module")
def web(env: dict[str, str], tmp_path_factory: Any) -> Iterator[tuple[str, Path]]:
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with gunicorn(env, workers=2, log_path=log_path) as base:
        yield base, log_path


@dataclass
class Answer:
    path: str
    status: int
    code: str | None
    seconds: float
    at: float
    retry_after: str | None


@dataclass
class Load:
    """Four clients calling a mix of endpoints (the database behind all but
    ping) until stopped."""

    base: str
    key: str
    answers: list[Answer] = field(default_factory=list)
    running: bool = True

    CALLS = (
        ("GET", "/api/v1/ping", None),
        ("POST", "/api/v1/validate", {"schema": "order/1", "instance": {"id": 1}}),
        ("GET", "/api/v1/schemas/order/1", None),
        ("GET", "/api/v1/jobs", None),
        ("GET", "/health", None),
    )

    def client(self, offset: int) -> None:
        http = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=60)
        n = offset
        while self.running:
            method, path, body = self.CALLS[n % len(self.CALLS)]
            n += 1
            started = time.monotonic()
            response = http.request(method, path, json=body)
            code = None
            if response.status_code >= 400 and response.headers.get("content-type") == "application/json":
                code = response.json().get("error", {}).get("code")
            self.answers.append(
                Answer(
                    path,
                    response.status_code,
                    code,
                    time.monotonic() - started,
                    started,
                    response.headers.get("Retry-After"),
                )
            )

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(4)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        for thread in self.threads:
            thread.join()

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.at < end]


def outage_lines(log_path: Path) -> list[str]:
    return [line for line in log_path.read_text().splitlines() if "Database unavailable" in line]


def ended_lines(log_path: Path) -> int:
    return log_path.read_text().count("Database answering again")


def run_fault(web: tuple[str, Path], cluster: tuple[PostgresServer, str], fault: str) -> tuple[Load, float, float]:
    base, log_path = web
    server, key = cluster
    ended_before = ended_lines(log_path)
    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    http.post("/api/v1/schemas", json={"name": "order", "version": "1", "schema": {"type": "object"}})
    with Load(base, key) as load:
        time.sleep(1.5)
        began = time.monotonic()
        if fault == "slow":
            # Every statement on the schema table waits for this lock until
            # its statement timeout cancels it.
            locker = server.connect("tollgate")
            locker.execute("BEGIN")
            locker.execute("LOCK TABLE validation_schema IN ACCESS EXCLUSIVE MODE")
        else:
            server.pause() if fault == "hang" else server.stop()
        # A hang outlasts two web deadlines (STATEMENT_TIMEOUT + 1 s): with
        # kept connections, only statements sent early enough in it fail.
        time.sleep(2 * (STATEMENT_TIMEOUT + 1) + 2 if fault == "hang" else 4)
        ended = time.monotonic()
        if fault == "slow":
            locker.execute("ROLLBACK")
            locker.close()
        else:
            server.resume() if fault == "hang" else server.start()
        # Traffic goes on until the outage is over: nothing failed for
        # QUIET_SECONDS, and the next answer logged its end.
        time.sleep(QUIET_SECONDS)
        wait_for(lambda: ended_lines(log_path) > ended_before, timeout=30, interval=0.2)
    return load, began, ended


def check_fault(
    load: Load, began: float, ended: float, log_path: Path, logged_before: int, *, health: int = 503
) -> dict[str, Any]:
    answers = load.answers
    by_status: dict[int, int] = {}
    for answer in answers:
        by_status[answer.status] = by_status.get(answer.status, 0) + 1
    assert set(by_status) <= {200, 503}, by_status  # never a 500
    # Answered during the fault (a request may have waited its turn behind slow ones).
    finished = [a for a in load.answers if began <= a.at + a.seconds <= ended + 1]
    api_503 = [a for a in finished if a.status == 503 and a.path.startswith("/api/")]
    assert api_503, "the outage gave no 503"
    odd = [(a.path, a.code, a.retry_after) for a in api_503 if a.code != "service_unavailable" or not a.retry_after]
    assert not odd, odd
    # /health answered while the database was away: 503 (down, hung), 200 (slow: SELECT 1 answers).
    health_statuses = {
        a.status for a in load.answers if a.path == "/health" and began + 0.5 <= a.at + a.seconds <= ended
    }
    assert health_statuses <= {health} and (health_statuses or health == 200), health_statuses
    assert all(a.status == 200 for a in load.between(ended + 4, ended + 100)), "not every endpoint recovered"
    longest = max(a.seconds for a in answers)
    assert longest < LONGEST, f"a request took {longest:.1f} s"
    lines = outage_lines(log_path)[logged_before:]
    assert len(lines) == 1, lines  # one line per outage, for both workers (and one when it ended)
    return {"counts": by_status, "longest": round(longest, 2), "requests": len(answers)}


def test_database_down_under_load(web: tuple[str, Path], cluster: tuple[PostgresServer, str]) -> None:
    logged_before = len(outage_lines(web[1]))
    load, began, ended = run_fault(web, cluster, "down")
    figures = check_fault(load, began, ended, web[1], logged_before)
    print("database down:", figures)


def test_database_hung_under_load(
    web: tuple[str, Path], cluster: tuple[PostgresServer, str], env: dict[str, str]
) -> None:
    logged_before = len(outage_lines(web[1]))
    with worker(env) as rq:  # the RQ worker lives through the hang too
        wait_for(lambda: "Listening on" in rq.output(), timeout=60)
        load, began, ended = run_fault(web, cluster, "hang")
        figures = check_fault(load, began, ended, web[1], logged_before)
        print("database hung:", figures)
        assert not re.search(r"WORKER TIMEOUT", web[1].read_text())  # no web worker was killed
        api = Client(web[0], cluster[1])
        job = api.upload(b'{"id": 1}\n{"id": 2}\n', schema="order/1", content_type="application/x-ndjson")
        assert job.status_code == 202, job.text
        assert api.finished(job.json()["id"], timeout=30)["status"] == "succeeded"
        assert rq.process.poll() is None
        worker_lines = [line for line in rq.output().splitlines() if "Database unavailable" in line]
    assert len(worker_lines) == 1, worker_lines  # it noticed, once, and went on


def test_database_too_slow_under_load(web: tuple[str, Path], cluster: tuple[PostgresServer, str]) -> None:
    logged_before = len(outage_lines(web[1]))
    load, began, ended = run_fault(web, cluster, "slow")
    # The server answers SELECT 1: /health stays 200 while statements time out.
    figures = check_fault(load, began, ended, web[1], logged_before, health=200)
    print("database too slow:", figures)
