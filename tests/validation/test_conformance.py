"""The official JSON-Schema-Test-Suite through the engine wrapper.

Every required test (``tests/<draft>/*.json``, not ``optional/``) of drafts
4, 6, 7, 2019-09 and 2020-12 must pass. ``remotes/`` is served by a local
resolver, as the registry serves registered schemas: nothing is fetched.

Two runs:

- with format assertion off, the specification's default: every required
  test passes;
- as production runs (format assertion on): every required test passes
  except the few that check that, by default, ``format`` is only an
  annotation; those must now come out invalid, which is the point of
  asserting formats.

The suite lives outside the project (``../shared/data/json-schema-test-suite``,
or ``JSON_SCHEMA_TEST_SUITE``); where it is absent the tests say so and skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from validation.engine import DRAFTS, SchemaError, compile_schema


def _find_suite() -> Path:
    """The suite beside the checkout (``../shared/data/…``), else where the
    workplace keeps it (a clone elsewhere, e.g. in CI), else where
    ``JSON_SCHEMA_TEST_SUITE`` points."""
    candidates = [
        Path(__file__).resolve().parents[3] / "shared" / "data" / "json-schema-test-suite",
        Path("/work/shared/data/json-schema-test-suite"),
    ]
    if os.environ.get("JSON_SCHEMA_TEST_SUITE"):
        candidates.insert(0, Path(os.environ["JSON_SCHEMA_TEST_SUITE"]))
    return next((path for path in candidates if path.is_dir()), candidates[0])


SUITE = _find_suite()
FOLDERS = {
    "draft4": "draft4",
    "draft6": "draft6",
    "draft7": "draft7",
    "2019-09": "draft2019-09",
    "2020-12": "draft2020-12",
}
URIS = {name: uri + ("#" if name.startswith("draft") else "") for uri, name in DRAFTS.items()}
ANNOTATION_ONLY = "only an annotation by default"

pytestmark = pytest.mark.skipif(
    not SUITE.is_dir(), reason=f"JSON-Schema-Test-Suite not found at {SUITE}: conformance not checked here"
)


@cache
def remotes() -> dict[str, Any]:
    root = SUITE / "remotes"
    return {f"http://localhost:1234/{p.relative_to(root)}": json.loads(p.read_text()) for p in root.rglob("*.json")}


def resolve(uri: str) -> Any:
    return remotes().get(uri.split("#")[0])


def cases(draft: str) -> Iterator[tuple[str, Any, list[dict[str, Any]]]]:
    for path in sorted((SUITE / "tests" / FOLDERS[draft]).glob("*.json")):  # optional/ is a folder: skipped
        for group in json.loads(path.read_text()):
            schema = group["schema"]
            if isinstance(schema, dict) and "$schema" not in schema:
                # The suite's older drafts leave the draft implicit; Tollgate
                # reads it from $schema, so the test states it there.
                schema = {"$schema": URIS[draft], **schema}
            yield f"{path.name}: {group['description']}", schema, group["tests"]


def run(draft: str, *, format_assertion: bool) -> tuple[int, list[str], list[str]]:
    """(tests run, failures, failures that are 'format is only an annotation' tests)."""
    total, failures, annotation = 0, [], []
    for where, schema, tests in cases(draft):
        try:
            compiled = compile_schema(schema, resolve=resolve, format_assertion=format_assertion)
        except SchemaError as exc:
            failures.append(f"{where}: does not compile: {exc.message}")
            total += len(tests)
            continue
        for test in tests:
            total += 1
            if compiled.is_valid(test["data"]) != test["valid"]:
                failure = f"{where} / {test['description']}"
                (annotation if ANNOTATION_ONLY in test["description"] else failures).append(failure)
    return total, failures, annotation


@pytest.mark.parametrize("draft", list(FOLDERS))
def test_every_required_test_passes(draft: str) -> None:
    total, failures, annotation = run(draft, format_assertion=False)
    assert total > 500
    assert failures + annotation == []


@pytest.mark.parametrize("draft", list(FOLDERS))
def test_with_format_assertion_only_the_annotation_by_default_tests_change(draft: str) -> None:
    _total, failures, annotation = run(draft, format_assertion=True)
    assert failures == []
    if draft == "2020-12":
        assert len(annotation) >= 10  # e.g. "invalid email string is only an annotation by default"
    assert all(ANNOTATION_ONLY in failure for failure in annotation)
