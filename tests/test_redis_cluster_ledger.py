"""The usage ledger on a Redis Cluster of three masters: the flusher drains
every primary (a SCAN and a pipeline per primary), an emptied Cluster is
noticed and every account's counters come back from the ledger on its own
node, the deploy checks read every primary, and a refund is fenced on the
account's node.

One Cluster for the module (``tests.test_redis_cluster``'s fixtures), its
nodes emptied before every test."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.db.models import Sum
from django.test import Client
from django.test.utils import override_settings

from quotas.backends import get_backend
from quotas.contract import Charge, Subject
from quotas.flusher import Flusher
from quotas.models import CounterEpoch, UsageRecord
from quotas.policy import parse_quotas
from quotas.redis_backend import account_key
from tests.conftest import bearer
from tests.factories import issue_key
from tests.redis_topology import ClusterTopology
from tests.test_redis_cluster import _empty_cluster, accounts_on_every_node, cluster, node_of, on_cluster

__all__ = ["_empty_cluster", "cluster", "on_cluster"]  # fixtures, shared with tests.test_redis_cluster

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_leases() -> Iterator[None]:
    # Every request goes to Redis, so that an emptied node meets the next one.
    with override_settings(RATELIMIT_LEASES=False):
        yield


def ledger(account_id: int) -> tuple[int, int]:
    """(requests, units) the ledger holds for the account."""
    totals = UsageRecord.objects.filter(account_id=account_id).aggregate(requests=Sum("requests"), units=Sum("units"))
    return totals["requests"] or 0, totals["units"] or 0


def pings(client: Client, key: str, n: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    for _ in range(n):
        status = client.get("/api/v1/ping", **bearer(key)).status_code
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def flush_once() -> str:
    out = io.StringIO()
    call_command("flush_usage", "--once", stdout=out)
    return out.getvalue()


def pending_keys(cluster: ClusterTopology) -> list[bytes]:
    """The usage and batch hashes not yet in the ledger, on every node."""
    return [name for server in cluster.servers for name in server.client().keys("tg:{a*}:[ub]")]


def test_the_flusher_drains_every_node_into_the_ledger_once(on_cluster: ClusterTopology, client: Client) -> None:
    accounts = accounts_on_every_node(on_cluster, 2, rate_limits="", quotas="1000/day")
    assert {node_of(on_cluster, account.pk) for account in accounts} == {s.port for s in on_cluster.servers}
    admitted = {}
    for n, account in enumerate(accounts, start=1):
        key = issue_key(account=account).key
        assert pings(client, key, n) == {200: n}
        admitted[account.pk] = (n, n)
    assert len(pending_keys(on_cluster)) == len(accounts)

    total = sum(requests for requests, _ in admitted.values())
    assert flush_once() == f"Flushed {len(accounts)} batch(es): {total} requests, {total} units.\n"
    assert {account_id: ledger(account_id) for account_id in admitted} == admitted
    assert pending_keys(on_cluster) == []  # every batch acknowledged on its node

    assert flush_once() == "Flushed 0 batch(es): 0 requests, 0 units.\n"
    assert {account_id: ledger(account_id) for account_id in admitted} == admitted


def test_an_emptied_cluster_is_noticed_and_every_account_restored(
    on_cluster: ClusterTopology, client: Client, admin_client: Client
) -> None:
    accounts = accounts_on_every_node(on_cluster, 1, rate_limits="", quotas="10/day")
    keys = {}
    for n, account in enumerate(accounts, start=1):
        keys[account.pk] = issue_key(account=account).key
        assert pings(client, keys[account.pk], n) == {200: n}
    flusher = Flusher(backend=get_backend)
    assert flusher.flush().lost is False
    assert flusher.flush().lost is False
    assert admin_client.get("/admin/health/redis").json()["counters_restored_at"] is None

    for server in on_cluster.servers:
        server.client().flushall()  # this test's own nodes

    assert flusher.flush().lost is True
    assert CounterEpoch.objects.latest().lost
    assert Flusher(backend=get_backend).flush().lost is False  # noticed once
    assert admin_client.get("/admin/health/redis").json()["counters_restored_at"].endswith("Z")
    for n, account in enumerate(accounts, start=1):
        # The first request restores the account's hash on its node from the ledger.
        body = client.get("/api/v1/usage", **bearer(keys[account.pk])).json()
        (day,) = [limit for limit in body["limits"] if limit["name"] == "daily-quota"]
        assert (day["used"], day["remaining"]) == (n, 10 - n)
        port = node_of(on_cluster, account.pk)
        (server,) = [s for s in on_cluster.servers if s.port == port]
        assert server.client().exists(account_key(account.pk))
        assert pings(client, keys[account.pk], 10) == {200: 10 - n, 429: n}
    flusher.flush()
    assert {account.pk: ledger(account.pk)[1] for account in accounts} == {account.pk: 10 for account in accounts}


def test_a_primary_restarted_with_its_data_is_not_a_loss(on_cluster: ClusterTopology) -> None:
    """The epoch is one key on one node; the run ids are every primary's,
    recorded as one digest that fits the ledger's column."""
    flusher = Flusher(backend=get_backend)
    assert flusher.flush().lost is False
    token, run_id = get_backend().epoch("unused")  # type: ignore[attr-defined]
    assert token == CounterEpoch.objects.get().token
    assert CounterEpoch.objects.get().run_id == run_id and len(run_id) <= 64
    assert flusher.flush().lost is False and CounterEpoch.objects.count() == 1


def test_a_primary_that_lost_its_data_alone_is_noticed(on_cluster: ClusterTopology) -> None:
    """Each primary keeps an epoch token of its own (a key in its slots):
    whichever node comes back empty, the loss is recorded once."""
    flusher = Flusher(backend=get_backend)
    assert flusher.flush().lost is False
    for server in on_cluster.servers:
        names = [name.decode() for name in server.client().keys("tg:epoch*")]
        assert len(names) == 1 and names[0].startswith("tg:epoch{e"), names
    for lost, server in enumerate(on_cluster.servers, start=1):
        server.client().flushall()  # this test's own node
        assert flusher.flush().lost is True
        assert flusher.flush().lost is False
        assert CounterEpoch.objects.filter(lost=True).count() == lost


def deploy_warnings() -> set[str]:
    return {message.id for message in run_checks(include_deployment_checks=True) if message.id.startswith("quotas.")}


def test_check_deploy_reads_what_every_primary_keeps(on_cluster: ClusterTopology) -> None:
    clients = [server.client() for server in on_cluster.servers]
    try:
        assert deploy_warnings() == {"quotas.W001"}  # the test's nodes keep nothing on disk
        clients[1].config_set("maxmemory-policy", "allkeys-lru")
        assert deploy_warnings() == {"quotas.W001", "quotas.W002"}
        clients[1].config_set("maxmemory-policy", "noeviction")
        for client in clients[:2]:
            client.config_set("appendonly", "yes")
        assert deploy_warnings() == {"quotas.W001"}  # one primary still keeps nothing
        clients[2].config_set("save", "3600 1")
        assert deploy_warnings() == set()  # AOF on two, RDB on the third
    finally:
        for client in clients:
            client.config_set("appendonly", "no")
            client.config_set("save", "")
            client.config_set("maxmemory-policy", "noeviction")


def test_refunds_on_a_cluster_are_fenced_on_the_accounts_node(on_cluster: ClusterTopology, client: Client) -> None:
    accounts = accounts_on_every_node(on_cluster, 1, rate_limits="", quotas="10000/day")
    backend = get_backend()
    for account in accounts:
        issued = issue_key(account=account)
        who = Subject(account.pk, issued.api_key.pk, backend.generation(account.pk), (), parse_quotas("10000/day"))
        reserved_at = time.time()
        # In the same counters: given back at once.
        assert backend.charge(who, Charge(1, 700), int(reserved_at * 1000)).allowed
        backend.refund(account.pk, 200, at=reserved_at)
        assert backend.usage([account.pk])[account.pk]["day"] == 500
        # Reserved, flushed, then the account's node emptied: the counters
        # restored from the ledger hold the reservation and what is used
        # since; the refund takes nothing from them, the ledger records it.
        assert backend.charge(who, Charge(1, 5000), int(reserved_at * 1000)).allowed
        Flusher(backend=get_backend).flush()
        port = node_of(on_cluster, account.pk)
        (server,) = [s for s in on_cluster.servers if s.port == port]
        server.client().flushall()
        assert pings(client, issued.key, 30) == {200: 30}
        backend.refund(account.pk, 5000, at=reserved_at)
        assert backend.usage([account.pk])[account.pk]["day"] == 5530
        Flusher(backend=get_backend).flush()
        assert ledger(account.pk)[1] == 530
        refund = UsageRecord.objects.get(account_id=account.pk, key_id=0)
        assert (refund.units, refund.refunded) == (-5200, 5200)
