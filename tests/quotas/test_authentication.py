"""Key records: a verified key is answered from the cache with no work, and a
refusal does the same work whatever the prefix, so that its time says nothing
about which prefixes exist (the timing itself: bench/ratelimit/key_timing.py)."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from quotas import keys
from quotas.exceptions import InvalidApiKey
from quotas.meter import process_meter
from quotas.models import ApiKey
from tests.factories import issue_key
from tests.redis_server import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)


def _work(raw: str, prefix: str, redis_server: RedisServer) -> tuple[list[str], dict[str, int]]:
    """The queries (the prefix blanked) and Redis commands a refusal of
    ``raw`` costs."""
    redis = redis_server.client()
    redis.config_resetstat()
    with CaptureQueriesContext(connection) as queries, pytest.raises(InvalidApiKey):
        process_meter().authenticate(raw)
    stats = redis.info("commandstats")
    commands = {name: int(stat["calls"]) for name, stat in stats.items() if name != "cmdstat_config|resetstat"}
    return [re.sub(prefix, "<prefix>", query["sql"]) for query in queries.captured_queries], commands


def _with_secret(prefix: str, secret: str) -> str:
    body = f"tg_{prefix}_{secret}"
    return body + keys._checksum(body)


def test_an_unknown_prefix_costs_what_a_wrong_secret_costs(redis_server: RedisServer) -> None:
    known = issue_key()
    process_meter().authenticate(known.key)  # cached, as for a key in use
    with pytest.raises(InvalidApiKey):  # the stand-in account's generation exists from then on
        process_meter().authenticate(keys.generate()[0])
    wrong_secret = _with_secret(known.api_key.prefix, "A" * 32)
    unknown, parsed = keys.generate()
    cases = {
        "wrong secret, record cached": _work(wrong_secret, known.api_key.prefix, redis_server),
        "wrong secret again": _work(wrong_secret, known.api_key.prefix, redis_server),
        "unknown prefix": _work(unknown, parsed.prefix, redis_server),
        "unknown prefix again": _work(unknown, parsed.prefix, redis_server),
    }
    queries, commands = cases["unknown prefix"]
    assert len(queries) == 2 and commands == {"cmdstat_evalsha": 1, "cmdstat_hget": 1}, cases
    assert all(case == (queries, commands) for case in cases.values()), cases
    # The right key still works, from the cache.
    with CaptureQueriesContext(connection) as after:
        assert process_meter().authenticate(known.key).prefix == known.api_key.prefix
    assert len(after) == 0


def test_a_verified_key_costs_no_database_redis_or_hashing(redis_server: RedisServer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    issued = issue_key()
    meter = process_meter()
    meter.authenticate(issued.key)

    def no_hashing(secret: str, secret_hash: str) -> bool:
        raise AssertionError("a cached, verified key must not be hashed again")

    monkeypatch.setattr(keys, "secret_matches", no_hashing)
    redis = redis_server.client()
    redis.config_resetstat()
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert meter.authenticate(issued.key).key_id == issued.api_key.pk
    assert len(queries) == 0
    assert set(redis.info("commandstats")) <= {"cmdstat_config|resetstat"}


def test_a_record_reads_expiry_and_state_as_stored() -> None:
    expires = timezone.now() + timedelta(hours=1)
    issued = issue_key()
    ApiKey.objects.filter(pk=issued.api_key.pk).update(expires_at=expires, label="ci")
    record = process_meter().authenticate(issued.key)
    assert record.expires_at == pytest.approx(expires.timestamp(), abs=1e-3)
    assert (record.label, record.usable, record.account_id) == ("ci", True, issued.api_key.account_id)
    assert record.subject.rates == issued.api_key.account.plan.rate_list


def test_records_due_again_are_read_together(redis_server: RedisServer) -> None:
    issued = [issue_key() for _ in range(5)]
    meter = process_meter()
    for key in issued:
        meter.authenticate(key.key)
    before = {key.api_key.prefix: meter.authenticate(key.key).loaded_at for key in issued}
    meter.records.max_age = 0.001  # every record is due
    time.sleep(0.01)
    redis = redis_server.client()
    redis.config_resetstat()
    with CaptureQueriesContext(connection) as queries:
        record = meter.authenticate(issued[0].key)
    rows = [query["sql"] for query in queries.captured_queries if "SELECT" in query["sql"]]
    assert len(rows) == 1 and rows[0].count("%s") == 0 and " IN (" in rows[0]  # one read of all five
    assert int(redis.info("commandstats")["cmdstat_evalsha"]["calls"]) == 5  # generations, one pipeline
    meter.records.max_age = 60.0
    for key in issued:
        assert meter.records._by_prefix[key.api_key.prefix].record.loaded_at > before[key.api_key.prefix]
    assert record.prefix == issued[0].api_key.prefix
