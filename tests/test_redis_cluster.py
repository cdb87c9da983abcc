"""The counters on a Redis Cluster of three masters (REDIS_CLUSTER_NODES),
the queue on a Redis of its own (RQ cannot use a Cluster).

Every key Tollgate writes for an account is the account's hash, whose hash
tag puts it in one slot; every script names it in KEYS. A concurrent burst
through a real gunicorn is exact per key and per account on every node, and
the operations page reads the accounts of all three nodes (single-key
commands, pipelined per node: no cross-slot command ever)."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import pytest
from django.test import Client
from django.test.utils import override_settings
from redis.crc import key_slot

from project.redis import caches
from quotas.backends import get_backend
from quotas.redis_backend import RedisBackend, account_key
from tests.conftest import bearer
from tests.factories import AccountFactory, PlanFactory, issue_key
from tests.processes import database_url, gunicorn, service_env
from tests.redis_server import RedisServer, free_port
from tests.redis_topology import ClusterTopology
from tests.test_redis_mandatory import load_wsgi

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterTopology]:
    topology = ClusterTopology().start()
    yield topology
    topology.stop()


@pytest.fixture(autouse=True)
def _empty_cluster(cluster: ClusterTopology) -> None:
    for server in cluster.servers:
        server.client().flushall()  # the test's own nodes


def cluster_env(cluster: ClusterTopology, queue: RedisServer) -> dict[str, str]:
    return {"REDIS_URL": "", "REDIS_CLUSTER_NODES": cluster.nodes, "QUEUE_REDIS_URL": queue.url}


@pytest.fixture
def on_cluster(cluster: ClusterTopology, redis_server: RedisServer) -> Iterator[ClusterTopology]:
    """This process's counters on the Cluster, its queue on the suite's Redis."""
    variables = cluster_env(cluster, redis_server)
    with override_settings(
        **variables,
        CACHES=caches(SimpleNamespace(**variables)),
        RQ_QUEUES={"validation": {"USE_REDIS_CACHE": "queue", "DEFAULT_TIMEOUT": 3600}},
    ):
        yield cluster


def node_of(cluster: ClusterTopology, account_id: int) -> int:
    """The port of the master that holds the account's hash."""
    client = cluster.client()
    try:
        node = client.nodes_manager.get_node_from_slot(key_slot(account_key(account_id).encode()))
        return int(node.port)
    finally:
        client.close()


def accounts_on_every_node(cluster: ClusterTopology, per_node: int, **plan_fields: object) -> list:  # type: ignore[type-arg]
    """Accounts on one plan, created until each master holds ``per_node``."""
    plan = PlanFactory(**plan_fields)
    by_node: dict[int, list] = {server.port: [] for server in cluster.servers}  # type: ignore[type-arg]
    while min(len(accounts) for accounts in by_node.values()) < per_node:
        account = AccountFactory(plan=plan)
        accounts = by_node[node_of(cluster, account.pk)]
        if len(accounts) < per_node:
            accounts.append(account)
        else:
            account.delete()
    return [account for accounts in by_node.values() for account in accounts]


def test_the_startup_gate_wants_a_queue_redis_beside_a_cluster(cluster: ClusterTopology) -> None:
    result = load_wsgi(service_env(REDIS_CLUSTER_NODES=cluster.nodes))
    assert result.returncode != 0
    assert "❌ Redis validation failed: QUEUE_REDIS_URL is required with REDIS_CLUSTER_NODES" in result.stderr


def test_the_startup_gate_connects_to_the_cluster(cluster: ClusterTopology, redis_server: RedisServer) -> None:
    result = load_wsgi(service_env(**cluster_env(cluster, redis_server)))
    assert result.returncode == 0, result.stderr
    assert f"✓ Redis counter backend connected: cluster://{cluster.nodes}" in result.stderr
    assert f"✓ Redis queue service connected: 127.0.0.1:{redis_server.port} (its own Redis)" in result.stderr
    # The scripts were loaded on every master.
    backend = RedisBackend()
    shas = [script.sha for script in (backend._charge, backend._generation, backend._refund)]
    assert all(server.client().script_exists(*shas) == [True] * 3 for server in cluster.servers)


def test_every_key_of_an_account_is_its_one_hash_in_one_slot(on_cluster: ClusterTopology, client: Client) -> None:
    accounts = accounts_on_every_node(on_cluster, 1, rate_limits="10/m", quotas="100/day, 1000/month")
    for account in accounts:
        for _ in range(2):
            key = issue_key(account=account).key
            assert client.get("/api/v1/ping", **bearer(key)).status_code == 200
    for server in on_cluster.servers:
        names = [name.decode() for name in server.client().keys()]
        assert names, "every master holds an account"
        # The account's hash and its usage not yet in the ledger, nothing
        # else: the hash tag is the account, so both are in its slot.
        assert all(re.fullmatch(r"tg:\{a\d+\}(:u)?", name) for name in names), names
        assert {node_of(on_cluster, int(re.search(r"\d+", name)[0])) for name in names} == {server.port}  # type: ignore[index]


@pytest.mark.e2e
def test_a_concurrent_burst_is_exact_per_key_and_per_account_on_every_node(
    cluster: ClusterTopology, redis_server: RedisServer
) -> None:
    # Rate-bound: one key each, 20 per hour, 30 asked. Quota-bound: three
    # keys each (100 per hour), 30 per day for the account, 60 asked.
    rate_bound = accounts_on_every_node(cluster, 2, rate_limits="20/h", quotas="")
    quota_bound = accounts_on_every_node(cluster, 2, rate_limits="100/h", quotas="30/day")
    rate_keys = [(issue_key(account=a).key, a.pk) for a in rate_bound]
    calls = [(key, account_id, "rate") for key, account_id in rate_keys for _ in range(30)]
    quota_keys = [(issue_key(account=a).key, a.pk) for a in quota_bound for _ in range(3)]
    calls += [(key, account_id, "quota") for key, account_id in quota_keys for _ in range(20)]
    local = threading.local()

    with gunicorn(service_env(DATABASE_URL=database_url(), **cluster_env(cluster, redis_server)), workers=3) as base:

        def one(call: tuple[str, int, str]) -> tuple[str, int, str, int]:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=base, timeout=10)
            key, account_id, kind = call
            status = local.client.get("/api/v1/ping", headers={"Authorization": f"Bearer {key}"}).status_code
            return key, account_id, kind, status

        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(one, calls[::2] + calls[1::2]))

    assert {status for *_, status in results} <= {200, 429}
    per_key = Counter(key for key, _, kind, status in results if kind == "rate" and status == 200)
    assert sorted(per_key.values()) == [20] * len(rate_bound)
    per_account = Counter(account_id for _, account_id, kind, status in results if kind == "quota" and status == 200)
    assert sorted(per_account.values()) == [30] * len(quota_bound)


def test_the_operations_page_reads_accounts_on_every_node(on_cluster: ClusterTopology, admin_client: Client) -> None:
    accounts = accounts_on_every_node(on_cluster, 2, rate_limits="", quotas="1000/day, 20000/month")
    api = Client()
    used = {}
    for n, account in enumerate(accounts, start=1):
        key = issue_key(account=account).key
        for _ in range(n):
            assert api.get("/api/v1/ping", **bearer(key)).status_code == 200
        used[account.name] = n
    body = admin_client.get("/admin/health/operations/data.json").json()
    assert body["usage_error"] is None
    rows = {row["name"]: row for row in body["accounts"]}
    assert {name: rows[name]["today"]["used"] for name in used} == used
    assert sum(count for _, count in body["per_minute"]) == sum(used.values())
    top = {row["account"]: row["requests"] for row in body["top_keys"]}
    assert all(top[name] == n for name, n in used.items() if name in top)
    redis = body["redis"]
    assert redis["connected"] is True and redis["topology"] == "cluster"
    assert redis["server"]["nodes"] == 3
    assert redis["queue"]["topology"] == "url"
    html = admin_client.get("/admin/health/operations/").content.decode()
    assert 'id="ops-redis-nodes">3<' in html


def test_health_and_admin_report_on_a_cluster(on_cluster: ClusterTopology, admin_client: Client) -> None:
    body = admin_client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["redis"]["topology"] == "cluster" and body["queue"]["topology"] == "url"
    report = admin_client.get("/admin/health/redis").json()
    assert report["redis"]["topology"] == "cluster" and report["redis"]["nodes"] == 3
    assert report["queue_redis"]["shared_with_counters"] is False


def test_a_key_record_change_reaches_accounts_on_every_node(on_cluster: ClusterTopology, client: Client) -> None:
    """Invalidation and generations go to each account's node (pipelined
    per node): a plan change is seen at once by every account."""
    accounts = accounts_on_every_node(on_cluster, 1, rate_limits="100/m", quotas="")
    keys = [issue_key(account=account).key for account in accounts]
    for key in keys:
        assert client.get("/api/v1/ping", **bearer(key)).status_code == 200
    plan = accounts[0].plan
    plan.rate_limits = "1/m"
    plan.save()
    for key in keys:
        statuses = [client.get("/api/v1/ping", **bearer(key)).status_code for _ in range(2)]
        assert statuses == [200, 429]  # 1/m now (a new limit starts afresh)


def test_scripts_flushed_on_every_node_are_loaded_again(on_cluster: ClusterTopology, client: Client) -> None:
    accounts = accounts_on_every_node(on_cluster, 1, rate_limits="2/m", quotas="")
    keys = [issue_key(account=account).key for account in accounts]
    for key in keys:
        assert client.get("/api/v1/ping", **bearer(key)).status_code == 200
    for server in on_cluster.servers:
        server.client().script_flush()
    # New key records (generations, pipelined per node) and charges (one
    # EVALSHA to the account's node) meet NOSCRIPT and load the script.
    fresh = [issue_key(account=account).key for account in accounts]
    for key in fresh + keys:
        assert client.get("/api/v1/ping", **bearer(key)).status_code == 200
    for key in keys:
        assert client.get("/api/v1/ping", **bearer(key)).status_code == 429


def test_an_unreachable_cluster_meets_the_fail_mode_not_a_500(redis_server: RedisServer, client: Client) -> None:
    nowhere = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    variables = {"REDIS_URL": "", "REDIS_CLUSTER_NODES": nowhere, "QUEUE_REDIS_URL": redis_server.url}
    key = issue_key(rate_limits="10/m", quotas="").key
    with override_settings(
        **variables,
        CACHES=caches(SimpleNamespace(**variables)),
        RQ_QUEUES={"validation": {"USE_REDIS_CACHE": "queue", "DEFAULT_TIMEOUT": 3600}},
    ):
        response = client.get("/api/v1/ping", **bearer(key))
        health = client.get("/health")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "rate_limiter_unavailable"
    assert health.status_code == 503
    body = health.json()
    assert body["redis"]["status"] == "disconnected" and body["queue"]["status"] == "connected"


def test_generations_of_a_batch_of_accounts_on_every_node(on_cluster: ClusterTopology) -> None:
    """The batch reload of key records: one pipeline per primary (a Cluster
    pipeline refuses scripts), each generation on its account's node, and
    the script loaded again where it was flushed."""
    accounts = accounts_on_every_node(on_cluster, 2, rate_limits="10/m", quotas="")
    ids = [account.pk for account in accounts]
    backend = get_backend()
    first = backend.generations(ids)
    assert first == {account_id: backend.generation(account_id) for account_id in ids}
    for server in on_cluster.servers:
        server.client().script_flush()
    assert backend.generations(ids) == first
    for account_id in ids:
        port = node_of(on_cluster, account_id)
        (server,) = [s for s in on_cluster.servers if s.port == port]
        assert server.client().hget(account_key(account_id), "g").decode() == first[account_id]
