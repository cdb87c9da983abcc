"""What only the Redis backend can show: one script, one key per account with a
Cluster hash tag and a TTL, and the same answers as the memory backend."""

from __future__ import annotations

import random

import pytest
from django.test.utils import override_settings

from quotas import limiter
from quotas.limiter import HASH_TTL_MS, Subject
from quotas.memory import MemoryBackend
from quotas.policy import parse_quotas, parse_rates
from quotas.redis_backend import RedisBackend, account_key
from tests.quotas.test_limiter import T0
from tests.redis_server import RedisServer


def test_account_key_has_a_cluster_hash_tag() -> None:
    assert account_key(42) == "tg:{a42}"
    with override_settings(QUOTAS_KEY_PREFIX="acme:"):
        assert account_key(42) == "acme:{a42}"


def test_every_key_has_a_ttl(redis_server: RedisServer) -> None:
    backend = RedisBackend()
    who = Subject(7, 70, backend.generation(7), parse_rates("10/s"), parse_quotas("5/day, 9/month"))
    backend.charge(who)
    client = redis_server.client()
    keys = client.keys("*")
    assert keys == [b"tg:{a7}"]
    ttl = client.pttl("tg:{a7}")
    assert HASH_TTL_MS - 60_000 < ttl <= HASH_TTL_MS


def test_one_charge_is_one_evalsha_and_one_round_trip(redis_server: RedisServer) -> None:
    backend = RedisBackend()
    backend.initialize()
    who = Subject(8, 80, backend.generation(8), parse_rates("5/s, 100/m"), parse_quotas("3/day, 9/month"))
    client = redis_server.client()
    backend.charge(who)  # the pool is warm
    client.config_resetstat()
    reads_before = int(client.info("stats")["total_reads_processed"])
    for _ in range(5):  # 2 admitted (the warm-up took one), then rejected by the daily quota
        backend.charge(who)
    stats = client.info("commandstats")
    reads = int(client.info("stats")["total_reads_processed"]) - reads_before
    # Our own INFO calls are reads too: one for the first INFO stats after RESETSTAT, one for commandstats.
    assert reads - 2 == 5
    assert stats["cmdstat_evalsha"]["calls"] == 5
    sent = {name for name in stats if name not in ("cmdstat_info", "cmdstat_config|resetstat")}
    # Inside the script: one HMGET per charge, one HSET per admitted charge, one PEXPIRE at most.
    assert sent <= {"cmdstat_evalsha", "cmdstat_hmget", "cmdstat_hset", "cmdstat_pexpire"}
    assert stats["cmdstat_hmget"]["calls"] == 5
    assert stats["cmdstat_hset"]["calls"] == 2
    assert "cmdstat_pexpire" not in stats  # refreshed about once a month, not per request


def test_scripts_are_reloaded_after_a_redis_restart(own_redis: RedisServer) -> None:
    backend = RedisBackend()
    backend.initialize()
    who = Subject(1, 1, backend.generation(1), parse_rates("10/s"), ())
    assert backend.charge(who).allowed
    own_redis.restart()  # empty: no scripts, no counters, no generation
    with pytest.raises(limiter.StaleGeneration):
        backend.charge(who)
    fresh = Subject(1, 1, backend.generation(1), who.rates, who.quotas)
    assert backend.charge(fresh).allowed


def test_redis_and_memory_backends_give_identical_answers() -> None:
    rng = random.Random(2026)
    redis_backend, memory_backend = RedisBackend(), MemoryBackend()
    plans = [("10/s, 50/m", "200/day, 900/month"), ("7/m", "15/day"), ("3/s, 13/5s", ""), ("", "40/month")]
    for round_ in range(6):
        rates, quotas = rng.choice(plans)
        subjects = [
            Subject(500 + round_, key, backend.generation(500 + round_), parse_rates(rates), parse_quotas(quotas))
            for backend in (redis_backend, memory_backend)
            for key in (1,)
        ]
        now = T0 + rng.random() * 86400
        for _ in range(300):
            now += rng.choice([0, 0, 0, 0.001, 0.05, 0.3, 2, 30, 3600])
            rate_cost, quota_cost = rng.choice([(1, 1), (1, 1), (1, 5), (0, 0), (1, 0), (0, 20)])
            expected = redis_backend.charge(subjects[0], rate_cost=rate_cost, quota_cost=quota_cost, now=now)
            actual = memory_backend.charge(subjects[1], rate_cost=rate_cost, quota_cost=quota_cost, now=now)
            assert actual == expected, (rates, quotas, now, rate_cost, quota_cost)
