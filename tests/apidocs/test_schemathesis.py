"""The live API against its own description: schemathesis generates requests
from ``/api/v1/openapi.json`` and sends them to a real gunicorn (private
Redis, test database) with a real key on a generous plan. Every answer must
have a documented status, content type, headers and body, and none may be a
5xx.

CI draws from a fixed seed; ``make fuzz`` draws many more cases from a fresh
one (``TOLLGATE_FUZZ_EXAMPLES``, ``TOLLGATE_FUZZ_SEED``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from apidocs.validation_paths import ORDER_SCHEMA
from tests.factories import issue_key
from tests.processes import database_url, gunicorn, service_env
from tests.redis_server import RedisServer
from validation.schemas import schema_register

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Bounded: the suite runs twice in CI (SQLite, PostgreSQL) on two cores.
MAX_EXAMPLES = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "30"))
SEED = int(os.environ.get("TOLLGATE_FUZZ_SEED", "20240917"))
# Operations whose acceptance of a well-formed request depends on meaning the
# description cannot state: whether an object is a valid JSON Schema
# (registerSchema, an inline schema in validate), how many instances the plan
# allows (validate), whether a file parses in its format (createJob). For them
# a well-formed request may rightly get a documented 4xx, so the
# "schema-valid request accepted" check is off; every other check stays on.
SEMANTIC = {"registerSchema", "validate", "createJob"}

# Raw uploads (NDJSON, CSV) are sent as the text they are.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
schemathesis.serializer.alias("text/csv", "text/plain")


@pytest.fixture
def live(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A gunicorn, a key on a plan without rate limits and with a quota no
    fuzzing run can exhaust, and the id of a job of that key's account."""
    issued = issue_key(name="fuzzing", rate_limits="", quotas="100000000/day", max_sync_instances=50)
    # The description's examples use this schema.
    schema_register(account_id=issued.api_key.account_id, name="orders", version="1", document=ORDER_SCHEMA)
    env = service_env(REDIS_URL=redis_server.url, DATABASE_URL=database_url(), MEDIA_ROOT=str(tmp_path / "media"))
    with gunicorn(env, workers=2) as base:
        response = httpx.post(
            f"{base}/api/v1/jobs?schema=orders/1",
            content=b'{"id": 1}\n',
            headers={"Authorization": f"Bearer {issued.key}", "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 202, response.text
        yield base, issued.key, response.json()["id"]


def fuzz(operation: Any, strategy: Any, base: str, examples: int = MAX_EXAMPLES, *, positive: bool = False) -> None:
    """Up to ``examples`` cases drawn from ``strategy``, each sent and
    checked by every built-in check; raises on the first failing case
    (shrunk by Hypothesis)."""

    excluded = [positive_data_acceptance] if operation.definition.raw.get("operationId") in SEMANTIC else []

    @seed(SEED)
    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        if case.headers and "Idempotency-Key" in case.headers and positive:
            # A generated key is reused across cases with other bodies: a
            # documented 422 (idempotency_key_reused), not an acceptance failure.
            case.headers["Idempotency-Key"] = uuid.uuid4().hex
        case.call_and_validate(base_url=base, excluded_checks=excluded, timeout=10)

    run()


# schemathesis's pytest integration for schemas loaded from a fixture
# (``schemathesis.pytest.from_fixture``) does not run under pytest 9 (it reads
# a node attribute pytest removed), so the operations are driven through
# Hypothesis directly: the same strategies and checks, one operation at a time.
def test_every_answer_is_documented(live: tuple[str, str, str]) -> None:
    base, key, job_id = live
    # The key for both security schemes: schemathesis sends one, and checks
    # that a request without a usable key gets 401.
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {"auth": {"openapi": {"bearerAuth": {"bearer": key}, "apiKeyAuth": {"api_key": key}}}}
    )
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json", config=config)
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        runs = {mode.value: operation.as_strategy(generation_mode=mode) for mode in GenerationMode}
        if operation.definition.raw.get("operationId") == "createJob":
            # A multipart text field cannot carry a JSON null or number: the
            # "invalid" `schema` field null goes out as the valid string
            # "null". Negative cases use a raw body instead (their query
            # parameters are what can be invalid).
            negative = GenerationMode.NEGATIVE
            runs["negative"] = operation.as_strategy(generation_mode=negative, media_type="application/x-ndjson")
        if "{job_id}" in operation.path:  # random ids only ever find nothing
            runs["an existing job"] = operation.as_strategy(path_parameters={"job_id": job_id})
        for index, strategy in enumerate(schema.get_strategies_from_examples(operation)):
            runs[f"example {index}"] = strategy
        for label, strategy in runs.items():
            try:
                examples = 3 if label.startswith("example") else MAX_EXAMPLES
                fuzz(operation, strategy, base, examples, positive=label != "negative")
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, report them all
                failures[f"{operation.label} ({label})"] = str(exc)[:3000]
    assert operations >= 3
    assert not failures, "\n\n".join(f"== {label}\n{text}" for label, text in failures.items())
