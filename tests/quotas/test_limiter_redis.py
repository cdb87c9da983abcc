"""What only the Redis backend can show: one script, one key per account with a
Cluster hash tag and a TTL, and the same answers as the memory backend."""

from __future__ import annotations

import random

import pytest
from django.test.utils import override_settings

from quotas.contract import HASH_TTL_MS, ONE, Charge, GiveBack, StaleGeneration, Subject
from quotas.memory import MemoryBackend
from quotas.policy import parse_quotas, parse_rates
from quotas.redis_backend import RedisBackend, account_key
from tests.quotas.test_limiter import T0
from tests.redis_server import RedisServer

NOW_MS = round(T0 * 1000)


def test_account_key_has_a_cluster_hash_tag() -> None:
    assert account_key(42) == "tg:{a42}"
    with override_settings(QUOTAS_KEY_PREFIX="acme:"):
        assert account_key(42) == "acme:{a42}"


def test_every_key_has_a_ttl(redis_server: RedisServer) -> None:
    backend = RedisBackend()
    who = Subject(7, 70, backend.generation(7), parse_rates("10/s"), parse_quotas("5/day, 9/month"))
    backend.charge(who, ONE, NOW_MS)
    client = redis_server.client()
    keys = client.keys("*")
    assert sorted(keys) == [b"tg:{a7}", b"tg:{a7}:u"]  # the counters, and the usage the ledger has not yet
    for key in keys:
        ttl = client.pttl(key)
        assert HASH_TTL_MS - 60_000 < ttl <= HASH_TTL_MS


def test_one_charge_is_one_evalsha_and_one_round_trip(redis_server: RedisServer) -> None:
    backend = RedisBackend()
    backend.initialize()
    who = Subject(8, 80, backend.generation(8), parse_rates("5/s, 100/m"), parse_quotas("3/day, 9/month"))
    client = redis_server.client()
    backend.charge(who, ONE, NOW_MS)  # the pool is warm
    client.config_resetstat()
    reads_before = int(client.info("stats")["total_reads_processed"])
    for _ in range(5):  # 2 admitted (the warm-up took one), then rejected by the daily quota
        backend.charge(who, ONE, NOW_MS)
    stats = client.info("commandstats")
    reads = int(client.info("stats")["total_reads_processed"]) - reads_before
    # Our own INFO calls are reads too: one for the first INFO stats after RESETSTAT, one for commandstats.
    assert reads - 2 == 5
    assert stats["cmdstat_evalsha"]["calls"] == 5
    sent = {name for name in stats if name not in ("cmdstat_info", "cmdstat_config|resetstat")}
    # Inside the script: one HMGET per charge, one HSET per admitted charge
    # and one HINCRBY (its requests for the ledger; its units are as many),
    # one PEXPIRE at most.
    assert sent <= {"cmdstat_evalsha", "cmdstat_hmget", "cmdstat_hset", "cmdstat_hincrby", "cmdstat_pexpire"}
    assert stats["cmdstat_hmget"]["calls"] == 5
    assert stats["cmdstat_hset"]["calls"] == 2
    assert stats["cmdstat_hincrby"]["calls"] == 2
    assert "cmdstat_pexpire" not in stats  # refreshed about once a month, not per request


def test_scripts_are_reloaded_after_a_redis_restart(own_redis: RedisServer) -> None:
    backend = RedisBackend()
    backend.initialize()
    who = Subject(1, 1, backend.generation(1), parse_rates("10/s"), ())
    assert backend.charge(who, ONE, NOW_MS).allowed
    own_redis.restart()  # empty: no scripts, no counters, no generation
    with pytest.raises(StaleGeneration):
        backend.charge(who, ONE, NOW_MS)
    fresh = Subject(1, 1, backend.generation(1), who.rates, who.quotas)
    assert backend.charge(fresh, ONE, NOW_MS).allowed


def _random_charge(rng: random.Random, who: Subject, now_ms: int, previous: list[object]) -> Charge:
    """A call as the meter makes them: plain, peeks, record costs, leases of
    random sizes and expiries, and give-backs of earlier leases."""
    requests, units = rng.choice([(1, 1), (1, 1), (1, 5), (0, 0), (1, 0), (0, 20)])
    lease: dict[str, object] = {}
    if requests == 1 and rng.random() < 0.4:
        lease = {
            "lease_requests": rng.choice([1, 3, 30, 200]),
            "lease_units": rng.choice([0, 3, 30, 200]),
            "lease_expires_ms": now_ms + rng.choice([10, 100, 250, 5000]),
        }
    if previous and rng.random() < 0.3:
        reply, taken_ms, windows = previous[-1] if rng.random() < 0.6 else rng.choice(previous)  # type: ignore[misc]
        lease["give_back"] = GiveBack(rng.choice([0, 1, 7, 100]), rng.choice([0, 2, 50]), taken_ms, reply.runs, windows)
    return Charge(requests, units, **lease)  # type: ignore[arg-type]


def test_redis_and_memory_backends_give_identical_answers() -> None:
    rng = random.Random(2026)
    redis_backend, memory_backend = RedisBackend(), MemoryBackend()
    plans = [
        ("10/s, 50/m", "200/day, 900/month"),
        ("7/m", "15/day"),
        ("3/s, 13/5s", ""),
        ("", "40/month"),
        ("5000/s, 90000/m", "1000000/day"),
        ("100000/s", "50000/day, 60000/month"),
    ]
    for round_ in range(12):
        rates, quotas = plans[round_ % len(plans)]
        subjects = [
            Subject(500 + round_, 1, backend.generation(500 + round_), parse_rates(rates), parse_quotas(quotas))
            for backend in (redis_backend, memory_backend)
        ]
        now = T0 + rng.random() * 86400
        previous: list[object] = []
        for _ in range(300):
            now += rng.choice([0, 0, 0, 0.001, 0.05, 0.3, 2, 30, 3600])
            now_ms = round(now * 1000)
            charge = _random_charge(rng, subjects[0], now_ms, previous)
            expected = redis_backend.charge(subjects[0], charge, now_ms)
            actual = memory_backend.charge(subjects[1], charge, now_ms)
            assert actual.reply == expected.reply, (rates, quotas, now_ms, charge)
            if expected.leased:
                previous.append((expected.reply, now_ms, tuple(window.id for window in expected.windows)))
        # The hashes agree field by field, bookkeeping included.
        stored = redis_backend.client().hgetall(f"tg:{{a{500 + round_}}}")
        mirrored = memory_backend._hashes[500 + round_][1]
        assert {k.decode(): v.decode() for k, v in stored.items() if k not in (b"g", b"x", b"c")} == {
            k: v for k, v in mirrored.items() if k not in ("g", "c")
        }
        # And so does the usage for the ledger (zero sums are kept by Redis only).
        usage = redis_backend.client().hgetall(f"tg:{{a{500 + round_}}}:u")
        assert {k.decode(): int(v) for k, v in usage.items() if int(v)} == {
            k: v for k, v in memory_backend._pending.get(500 + round_, {}).items() if v
        }
