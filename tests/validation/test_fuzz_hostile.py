"""Hostile schemas, instances and uploads, generated, against a real gunicorn
with one worker: every answer is documented for its operation, never a 5xx,
within the time budget plus slack, of bounded size, and served by the same
worker throughout (none was killed).

CI runs a few dozen cases per test from a fixed seed; ``make fuzz`` runs many
more from a fresh seed (``TOLLGATE_FUZZ_EXAMPLES``, ``TOLLGATE_FUZZ_SEED``;
the seed is printed, so a failure can be replayed)."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.factories import issue_key
from tests.processes import database_url, gunicorn, service_env
from tests.redis_server import RedisServer
from tests.validation.hostile import assert_documented, fanout_chain, fanout_per_level, gunicorn_workers, nested_items

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "30"))
SEED = int(os.environ.get("TOLLGATE_FUZZ_SEED", "20240917"))
BUDGET = 0.5  # this server's VALIDATION_SYNC_TIME_LIMIT: the guard works the same, the suite waits less
SLACK = 6.0
MAX_ANSWER = 1024 * 1024 + 64 * 1024  # the error byte cap plus the answer's frame

# -- generators ----------------------------------------------------------------

ODD_TEXT = st.sampled_from(["", "a\x00b", "\x00", "~1/", "$ref", "é" * 3, "\U0001f600", "x" * 300, "k" * 5000])
NAMES = st.one_of(st.text(max_size=8), ODD_TEXT)
PATTERNS = st.sampled_from(["^(a|a)*$", "(a+)+$", "^[a-z]+$", "(?<=a)b", "\\p{L}", "[", "(((((((a)))))))"])
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 1e308, 5e-324, 2**63, 2**64 - 1]),
)
LEAVES = st.one_of(
    st.sampled_from(
        [
            True,
            False,
            {},
            {"type": "string"},
            {"type": ["integer", "null"]},
            {"minimum": 3},
            {"multipleOf": 1e-300},
            {"maxLength": 2**63},
            {"format": "email"},
            {"format": "date-time"},
            {"uniqueItems": True},
            {"$ref": "#"},
            {"$ref": "#/$defs/missing"},
            {"$ref": "tollgate://schemas/nope/1"},
            {"$dynamicRef": "#meta"},
        ]
    ),
    st.builds(lambda text: {"const": text}, ODD_TEXT),
    st.builds(lambda size: {"const": "c" * size}, st.integers(0, 300_000)),
    st.builds(lambda values: {"enum": values}, st.lists(st.one_of(NUMBERS, ODD_TEXT), max_size=5)),
    st.builds(lambda pattern: {"pattern": pattern}, PATTERNS),
)


def _combine(children: Any) -> Any:
    many = st.lists(children, min_size=1, max_size=4)
    return st.one_of(
        st.builds(lambda key, items: {key: items}, st.sampled_from(["anyOf", "allOf", "oneOf", "prefixItems"]), many),
        st.builds(
            lambda key, child: {key: child}, st.sampled_from(["not", "items", "contains", "propertyNames"]), children
        ),
        st.builds(lambda props: {"properties": props}, st.dictionaries(NAMES, children, max_size=3)),
        st.builds(lambda props: {"patternProperties": props}, st.dictionaries(PATTERNS, children, max_size=2)),
        st.builds(lambda a, b, c: {"if": a, "then": b, "else": c}, children, children, children),
        st.builds(
            lambda defs, ref: {"$defs": defs, "$ref": f"#/$defs/{ref}"},
            st.dictionaries(st.sampled_from("abc"), children, min_size=1),
            st.sampled_from("abc"),
        ),
        st.builds(lambda child: {"$dynamicAnchor": "meta", "additionalProperties": child}, children),
    )


SCHEMAS = st.one_of(
    st.recursive(LEAVES, _combine, max_leaves=25),
    st.builds(fanout_chain, st.integers(1, 26), applicator=st.sampled_from(["anyOf", "oneOf", "allOf"])),
    st.just(fanout_per_level()),
    st.builds(nested_items, st.integers(100, 400)),
    st.sampled_from(
        [
            {
                "$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}},
                "$ref": "#/$defs/a",
            },
            {"$schema": "http://json-schema.org/draft-03/schema#"},
            {"$schema": 12},
            {"type": 12},
            {"$id": "urn:\x00", "$ref": "#"},
        ]
    ),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ODD_TEXT, st.text(max_size=20))
INSTANCES = st.one_of(
    st.recursive(
        SCALARS, lambda c: st.one_of(st.lists(c, max_size=6), st.dictionaries(NAMES, c, max_size=5)), max_leaves=40
    ),
    st.builds(lambda depth: _nest(depth), st.integers(60, 70)),
    st.builds(lambda size: ["z"] * size, st.integers(100, 3000)),
)


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}
    return value


def body_of(data: Any) -> bytes:
    """JSON of anything generated: big integers (which orjson refuses) via the standard library."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data).encode()


# -- the live server --------------------------------------------------------------


@pytest.fixture(scope="module")
def live(
    django_db_setup: None, django_db_blocker: Any, redis_server: RedisServer, tmp_path_factory: Any
) -> Iterator[httpx.Client]:
    with django_db_blocker.unblock():
        url = database_url()
        key = issue_key(name="fuzz", rate_limits="", quotas="100000000/day", max_sync_instances=20).key
    env = service_env(
        REDIS_URL=redis_server.url,
        DATABASE_URL=url,
        MEDIA_ROOT=str(tmp_path_factory.mktemp("fuzz-media")),
        VALIDATION_SYNC_TIME_LIMIT=str(BUDGET),
        VALIDATION_MAX_RECORD_BYTES=str(256 * 1024),
    )
    print(f"fuzzing with TOLLGATE_FUZZ_SEED={SEED} TOLLGATE_FUZZ_EXAMPLES={EXAMPLES}")
    with (
        gunicorn(env, workers=1) as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client,
    ):
        registered = client.post(
            "/api/v1/schemas", json={"name": "order", "version": "1", "schema": {"type": "object"}}
        )
        assert registered.status_code == 201
        yield client


def check(client: httpx.Client, response: httpx.Response, operation: str, took: float, worker: set[int]) -> None:
    assert response.status_code < 500, response.text[:2000]
    assert_documented(response, operation)
    assert took < BUDGET + SLACK, f"{operation} took {took:.1f} s"
    assert len(response.content) <= MAX_ANSWER
    if response.status_code == 200 and operation == "validate":
        results = response.json().get("results", [response.json()])
        assert all(len(e["message"]) <= 256 + 40 for r in results for e in r["errors"])
    assert gunicorn_workers(str(client.base_url).rstrip("/")) == worker  # never killed


def timed(client: httpx.Client, *args: Any, **kwargs: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.post(*args, **kwargs)
    return response, time.monotonic() - started


FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def test_hostile_schemas_and_instances(live: httpx.Client) -> None:
    worker = gunicorn_workers(str(live.base_url).rstrip("/"))
    assert len(worker) == 1

    @seed(SEED)
    @FUZZ
    @given(
        schema=SCHEMAS,
        instances=st.lists(INSTANCES, min_size=1, max_size=4),
        single=st.booleans(),
        register=st.booleans(),
    )
    def case(schema: Any, instances: list[Any], single: bool, register: bool) -> None:
        body = {"schema": schema, **({"instance": instances[0]} if single else {"instances": instances})}
        response, took = timed(
            live, "/api/v1/validate", content=body_of(body), headers={"Content-Type": "application/json"}
        )
        check(live, response, "validate", took, worker)
        if register:
            version = f"v{random.randrange(10**9)}"
            payload = body_of({"name": "fuzzed", "version": version, "schema": schema})
            response, took = timed(
                live, "/api/v1/schemas", content=payload, headers={"Content-Type": "application/json"}
            )
            check(live, response, "registerSchema", took, worker)

    case()


UPLOADS = st.one_of(
    st.builds(
        lambda depth, tail: (b"[" + b"[" * depth + b"]" * depth + tail, "application/json"),
        st.integers(1, 200_000),
        st.sampled_from([b"]", b",1]", b"", b"]]", b",]"]),
    ),
    st.builds(lambda items: (body_of(items), "application/json"), st.lists(INSTANCES, max_size=5)),
    st.builds(lambda data: (data, "application/json"), st.binary(max_size=200).map(lambda b: b"[" + b)),
    st.builds(
        lambda lines: (b"\n".join(lines), "application/x-ndjson"),
        st.lists(st.one_of(st.binary(max_size=40), st.builds(body_of, INSTANCES)), max_size=6),
    ),
    st.builds(lambda size: (b'{"a": "' + b"x" * size + b'"}', "application/x-ndjson"), st.integers(200_000, 300_000)),
    st.builds(lambda data: (b"id,note\r\n" + data, "text/csv"), st.binary(max_size=200)),
    st.builds(
        lambda data: (data, "multipart/form-data; boundary=B"), st.binary(max_size=200).map(lambda b: b"--B\r\n" + b)
    ),
)


def test_hostile_uploads(live: httpx.Client) -> None:
    worker = gunicorn_workers(str(live.base_url).rstrip("/"))

    @seed(SEED)
    @FUZZ
    @given(upload=UPLOADS, fmt=st.sampled_from(["", "&format=json", "&format=ndjson", "&format=csv"]))
    def case(upload: tuple[bytes, str], fmt: str) -> None:
        content, content_type = upload
        response, took = timed(
            live, f"/api/v1/jobs?schema=order/1{fmt}", content=content, headers={"Content-Type": content_type}
        )
        check(live, response, "createJob", took, worker)

    case()
