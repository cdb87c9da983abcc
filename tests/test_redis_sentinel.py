"""The counters and the queue through Redis Sentinel, and a failover under
traffic: a master, a replica and three Sentinels on loopback ports; a real
gunicorn meters steady API traffic while the master is SIGKILLed.

The failover test prints what the failover cost (run with ``-s``): how long
requests were refused (503), the longest request, how long after the
Sentinels promoted the replica requests were admitted again, and how many
requests were admitted beyond the quota (writes the promoted replica never
received: Redis replication is asynchronous). It asserts what must hold
whatever the machine's speed: every refusal is a 503 with Retry-After, the
same processes serve again from the new master without a restart, the
scripts are loaded there, and the over-admission stays within what the
requests in flight at the kill could have lost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from django.core.checks import run_checks
from django.test import Client
from django.test.utils import override_settings

from project.redis import caches
from quotas.redis_backend import RedisBackend
from tests.conftest import bearer
from tests.factories import issue_key
from tests.processes import database_url, gunicorn, service_env
from tests.redis_topology import SentinelTopology
from tests.test_redis_mandatory import load_wsgi

# Load tests that measure a fault: one at a time (make test: --dist loadgroup).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("fault-under-load")]

THREADS = 6
QUOTA = 400


@pytest.fixture
def sentinel() -> Iterator[SentinelTopology]:
    topology = SentinelTopology(password="sentinel-master-pw").start()
    yield topology
    topology.stop()


def sentinel_env(topology: SentinelTopology) -> dict[str, str]:
    return {
        "REDIS_SENTINELS": topology.nodes,
        "REDIS_SENTINEL_MASTER": topology.master_name,
        "REDIS_PASSWORD": topology.password or "",
    }


@pytest.fixture
def through_sentinel(sentinel: SentinelTopology) -> Iterator[SentinelTopology]:
    """This process's counters and queue through the Sentinels."""
    variables = sentinel_env(sentinel)
    with override_settings(REDIS_URL="", **variables, CACHES=caches(SimpleNamespace(**variables))):
        yield sentinel


def test_counters_and_queue_through_sentinel(through_sentinel: SentinelTopology, client: Client) -> None:
    key = issue_key(rate_limits="5/m", quotas="").key
    statuses = Counter(client.get("/api/v1/ping", **bearer(key)).status_code for _ in range(7))
    assert statuses == Counter({200: 5, 429: 2})
    assert any(k.startswith(b"tg:{a") for k in through_sentinel.master.client().keys())
    body = client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["redis"]["topology"] == body["queue"]["topology"] == "sentinel"
    assert body["queue"]["shared_with_counters"] is True


def test_the_startup_gate_connects_through_sentinel(sentinel: SentinelTopology) -> None:
    result = load_wsgi(service_env(**sentinel_env(sentinel)))
    assert result.returncode == 0, result.stderr
    where = f"sentinel://{sentinel.nodes}/{sentinel.master_name}/0"
    assert f"✓ Redis counter backend connected: {where}" in result.stderr
    assert f"✓ Redis queue service connected: {where} (shared with the counters)" in result.stderr
    assert "sentinel-master-pw" not in result.stderr


@dataclass(frozen=True, slots=True)
class Sample:
    started: float
    ended: float
    status: int
    code: str | None
    retry_after: str | None


def _drive(base: str, key: str, stop: threading.Event, samples: list[Sample]) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as http:
        while not stop.is_set():
            started = time.monotonic()
            response = http.get("/api/v1/ping")
            ended = time.monotonic()
            code = None if response.status_code == 200 else response.json()["error"]["code"]
            samples.append(Sample(started, ended, response.status_code, code, response.headers.get("Retry-After")))


def _until(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting")
        time.sleep(0.01)


@pytest.mark.e2e
def test_failover_under_traffic_is_followed_without_restart(sentinel: SentinelTopology, tmp_path: Path) -> None:
    key = issue_key(rate_limits="", quotas=f"{QUOTA}/day")
    env = service_env(DATABASE_URL=database_url(), RATELIMIT_LEASES="false", **sentinel_env(sentinel))
    log = tmp_path / "gunicorn.log"
    with gunicorn(env, workers=2, log_path=log) as base:
        samples: list[Sample] = []
        stop = threading.Event()
        threads = [threading.Thread(target=_drive, args=(base, key.key, stop, samples)) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        try:
            # Steady traffic first, then the master dies mid-stream.
            _until(lambda: sum(s.status == 200 for s in samples) >= QUOTA // 3, timeout=30)
            old_port = sentinel.master.port
            killed = time.monotonic()
            sentinel.master.kill()
            promoted = sentinel.wait_for_promotion(old_port)
            # Until the quota is spent on the new master and refused for a while.
            _until(lambda: sum(s.code == "quota_exceeded" and s.started > promoted for s in samples) >= 20, timeout=30)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        usage = httpx.get(f"{base}/api/v1/usage", headers={"Authorization": f"Bearer {key.key}"}).json()
        booted = log.read_text().count("Booting worker")

    statuses = Counter(s.status for s in samples)
    refused = [s for s in samples if s.status == 503]
    admitted = statuses[200]
    after = [s for s in samples if s.started > promoted]
    first_after = min(s.ended for s in after if s.status == 200)
    in_flight_at_kill = sum(s.started <= killed <= s.ended for s in samples)
    over = admitted - QUOTA
    print(
        f"\nFAILOVER: {len(samples)} requests {dict(statuses)}; 503 from +{refused[0].started - killed:.3f} s "
        f"to +{refused[-1].ended - killed:.3f} s after the kill ({refused[-1].ended - refused[0].started:.3f} s); "
        f"promoted +{promoted - killed:.3f} s; admitted again +{first_after - promoted:.3f} s after promotion; "
        f"longest request {max(s.ended - s.started for s in samples):.3f} s; "
        f"admitted {admitted} for a quota of {QUOTA} (over-admission {over}); {in_flight_at_kill} in flight at the kill"
    )
    # Every refusal is the fail mode's (closed): 503, a stable code, Retry-After.
    assert refused, "the failover was not seen"
    assert {(s.code, s.retry_after) for s in refused} <= {
        ("rate_limiter_unavailable", "1"),
        ("service_unavailable", "1"),
    }
    # The same processes were served by the new master, which counted the
    # rest of the quota exactly and refused beyond it.
    assert any(s.status == 200 for s in after)
    assert booted == 2  # no worker was restarted
    assert statuses.keys() <= {200, 429, 503}
    assert usage["limits"][0]["remaining"] == 0
    # Writes lost in the failover are at most those acknowledged by the old
    # master and not yet replicated: on loopback, the requests in flight.
    assert 0 <= over <= in_flight_at_kill + THREADS
    # The scripts were loaded on the new master when it first answered NOSCRIPT.
    assert all(sentinel.replica.client().script_exists(RedisBackend()._charge.sha))


def test_check_deploy_reads_what_the_sentinel_master_keeps(through_sentinel: SentinelTopology) -> None:
    def warnings() -> set[str]:
        return {m.id for m in run_checks(include_deployment_checks=True) if m.id.startswith("quotas.")}

    assert warnings() == {"quotas.W001"}  # the test's master keeps nothing on disk
    through_sentinel.master.client().config_set("appendonly", "yes")
    assert warnings() == set()
