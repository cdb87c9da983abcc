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

The suite is test data kept outside the project: ``JSON_SCHEMA_TEST_SUITE``
names its folder, else it is ``../shared/data/json-schema-test-suite`` beside
this checkout, or beside the local repository this checkout was cloned from
(followed through clones of clones). Where it is absent the tests skip, saying
how to get it (the README's Development section); under ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.factories import AccountFactory
from validation.engine import DRAFTS, SchemaError, compile_schema
from validation.exceptions import InvalidSchema, SchemaTooComplex
from validation.schemas import inline_validator, schemas_register, validators

ROOT = Path(__file__).resolve().parents[2]
BESIDE = Path("shared", "data", "json-schema-test-suite")
GET_IT = (
    "Get it (README, Development): the official json-schema-org/JSON-Schema-Test-Suite at commit 44401e0c "
    "in ../shared/data/json-schema-test-suite, or set JSON_SCHEMA_TEST_SUITE to its folder."
)


def _local_origin(checkout: Path) -> Path | None:
    """The local repository ``checkout`` was cloned from, if it was."""
    result = subprocess.run(
        ["git", "-C", str(checkout), "config", "--get", "remote.origin.url"], capture_output=True, text=True
    )
    url = result.stdout.strip().removeprefix("file://")
    if result.returncode != 0 or not url.startswith(("/", "./", "../")):
        return None  # no origin, or a remote one (https://, ssh://, host:path)
    origin = (checkout / url).resolve()
    if origin.name == ".git":
        origin = origin.parent
    return origin if origin.is_dir() and origin != checkout else None


def find_suite(checkout: Path = ROOT, environ: Mapping[str, str] = os.environ) -> tuple[Path | None, list[Path]]:
    """``(the suite's folder or None, the folders looked at)``."""
    if environ.get("JSON_SCHEMA_TEST_SUITE"):
        named = Path(environ["JSON_SCHEMA_TEST_SUITE"])
        return (named if named.is_dir() else None), [named]
    looked: list[Path] = []
    where: Path | None = checkout
    while where is not None and len(looked) < 5:
        candidate = where.parent / BESIDE
        looked.append(candidate)
        if candidate.is_dir():
            return candidate, looked
        where = _local_origin(where)
    return None, looked


FOUND, LOOKED = find_suite()
SUITE = FOUND or LOOKED[0]
FOLDERS = {
    "draft4": "draft4",
    "draft6": "draft6",
    "draft7": "draft7",
    "2019-09": "draft2019-09",
    "2020-12": "draft2020-12",
}
URIS = {name: uri + ("#" if name.startswith("draft") else "") for uri, name in DRAFTS.items()}
ANNOTATION_ONLY = "only an annotation by default"


def require_suite(found: Path | None, looked: list[Path], environ: Mapping[str, str]) -> None:
    """Skip when the suite was not found, except under CI=true, where that fails."""
    if found is None:
        message = f"JSON-Schema-Test-Suite not found (looked in {', '.join(map(str, looked))}). {GET_IT}"
        if environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _suite_present() -> None:
    require_suite(FOUND, LOOKED, os.environ)


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


def test_a_clone_made_elsewhere_finds_the_suite_beside_its_origin(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(clone)], check=True)
    again = tmp_path / "clone-of-the-clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(clone), str(again)], check=True)
    assert find_suite(again, environ={})[0] == FOUND


def test_json_schema_test_suite_names_the_folder(tmp_path: Path) -> None:
    assert find_suite(environ={"JSON_SCHEMA_TEST_SUITE": str(tmp_path)}) == (tmp_path, [tmp_path])
    assert find_suite(environ={"JSON_SCHEMA_TEST_SUITE": str(tmp_path / "absent")})[0] is None


def test_a_missing_suite_skips_here_and_fails_under_ci(tmp_path: Path) -> None:
    found, looked = find_suite(environ={"JSON_SCHEMA_TEST_SUITE": str(tmp_path / "absent")})
    with pytest.raises(pytest.skip.Exception, match=r"JSON-Schema-Test-Suite not found.*44401e0c"):
        require_suite(found, looked, {"CI": "false"})
    with pytest.raises(pytest.fail.Exception, match="JSON-Schema-Test-Suite not found"):
        require_suite(found, looked, {"CI": "true"})
    require_suite(FOUND, LOOKED, {"CI": "true"})  # found: nothing to say


# -- optional/: through the registry, the remotes registered in an account ------

# The optional tests that fail, each with why (the engine's own verdicts).
# Nothing may be added here: a test that starts failing is a regression.
OPTIONAL_FAILURES: dict[str, str] = {}
# The count printed by the run this list was taken from.
OPTIONAL_PASSES = 3385


def remote_entries() -> list[tuple[str, str, Any]]:
    """Every remote as ``(name, version, document)``, with the ``$id`` of its
    retrieval URI where it has none (as a user registers a schema fetched
    from a URL), and the ``$schema`` its folder names. One whose ``$id`` is
    not its URL gets an alias at its URL (``allOf`` of a ``$ref`` to it).
    Draft 3 and ``v1/`` (the next draft) are not supported and are left out."""
    entries = []
    for uri, document in sorted(remotes().items()):
        path = uri.removeprefix("http://localhost:1234/")
        if path.startswith(("draft3/", "v1/")):
            continue
        folder = path.split("/")[0]
        draft = folder if folder in ("draft4", "draft6", "draft7") else None
        if isinstance(document, dict) and draft and "$schema" not in document:
            document = {"$schema": URIS[draft], **document}  # the folder says which draft
        if isinstance(document, dict) and "$id" not in document and "id" not in document:
            document = {("id" if draft == "draft4" else "$id"): uri, **document}
        name = "remote." + path.replace("/", ".")
        entries.append((name, "1", document))
        own = document.get("id" if draft == "draft4" else "$id") if isinstance(document, dict) else uri
        if own != uri:
            alias = {"$schema": document.get("$schema", URIS["2020-12"]), "$id": uri, "allOf": [{"$ref": own}]}
            entries.append((name + ".url", "1", alias))
    return entries


def optional_cases(draft: str) -> Iterator[tuple[str, Any, list[dict[str, Any]]]]:
    folder = SUITE / "tests" / FOLDERS[draft] / "optional"
    for path in sorted(folder.rglob("*.json")):
        for group in json.loads(path.read_text()):
            schema = group["schema"]
            if isinstance(schema, dict) and "$schema" not in schema:
                schema = {"$schema": URIS[draft], **schema}
            yield f"{draft}/{path.relative_to(folder)}: {group['description']}", schema, group["tests"]


@pytest.mark.django_db
def test_optional_tests_pass_with_the_remotes_registered_in_an_account(capsys: pytest.CaptureFixture[str]) -> None:
    account_id = AccountFactory().pk
    schemas_register(account_id=account_id, entries=remote_entries())
    validators.clear()
    passed, failures = 0, {}
    for draft in FOLDERS:
        for where, schema, tests in optional_cases(draft):
            try:
                compiled = inline_validator(account_id=account_id, document=schema)
            except (InvalidSchema, SchemaTooComplex) as exc:
                for test in tests:
                    failures[f"{where} / {test['description']}"] = f"does not compile: {exc.message}"
                continue
            for test in tests:
                if compiled.is_valid(test["data"]) == test["valid"]:
                    passed += 1
                else:
                    failures[f"{where} / {test['description']}"] = "wrong verdict"
    with capsys.disabled():  # the count is printed in every run, CI's included
        print(f"\nJSON-Schema-Test-Suite optional/: {passed} of {passed + len(failures)} pass")
        for failure, why in sorted(failures.items()):
            print(f"  failing: {failure}: {why}")
    assert set(failures) <= set(OPTIONAL_FAILURES), sorted(set(failures) - set(OPTIONAL_FAILURES))
    assert passed >= OPTIONAL_PASSES
