"""Hostile inputs, as an attacker with one ordinary key would send them, and
the checks every answer to them must pass. Shared by the attack regression
tests and the fuzz tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from apidocs.document import openapi_document
from tests.processes import alive  # noqa: F401  (the attack tests take it from here)


def fanout_chain(levels: int, *, applicator: str = "anyOf", leaf: Any = None) -> dict[str, Any]:
    """``levels`` definitions, each applying the next twice in place: 2^levels
    evaluations of one value (20 levels: 1.4 KB)."""
    defs: dict[str, Any] = {
        f"l{n}": {applicator: [{"$ref": f"#/$defs/l{n + 1}"}, {"$ref": f"#/$defs/l{n + 1}"}]} for n in range(levels)
    }
    defs[f"l{levels}"] = leaf if leaf is not None else {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/l0"}


def fanout_per_level() -> dict[str, Any]:
    """Fan-out of two at every level of the instance: 2^depth evaluations."""
    return {
        "$defs": {
            "a": {"anyOf": [{"$ref": "#/$defs/b"}, {"$ref": "#/$defs/b"}]},
            "b": {"type": "array", "items": {"$ref": "#/$defs/a"}},
        },
        "$ref": "#/$defs/a",
    }


def nested_items(depth: int) -> dict[str, Any] | bool:
    schema: dict[str, Any] | bool = True
    for _ in range(depth):
        schema = {"items": schema}
    return schema


def nested_array(depth: int) -> bytes:
    """A JSON array nested ``depth`` levels (2 bytes a level)."""
    return b"[" * depth + b"]" * depth


@cache
def _documented() -> dict[str, set[str]]:
    statuses = {}
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            statuses[operation["operationId"]] = set(operation["responses"])
    return statuses


def assert_documented(response: httpx.Response, operation_id: str) -> None:
    """The answer's status is one the OpenAPI description lists for the operation."""
    assert str(response.status_code) in _documented()[operation_id], (operation_id, response.status_code)


def assert_error(response: httpx.Response, status: int, code: str, operation_id: str) -> dict[str, Any]:
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text[:500]
    assert_documented(response, operation_id)
    return response.json()["error"]  # type: ignore[no-any-return]


@contextmanager
def within(seconds: float) -> Iterator[Callable[[], float]]:
    """Asserts the block took at most ``seconds`` (generous: the machine is shared)."""
    started = time.monotonic()
    yield lambda: time.monotonic() - started
    took = time.monotonic() - started
    assert took <= seconds, f"took {took:.1f} s, more than {seconds} s"


def gunicorn_workers(base: str) -> set[int]:
    """The pids of the gunicorn workers serving ``base``: the children of its
    master (not their own children, the guard's forks, which share the command line)."""
    port = base.rsplit(":", 1)[1]
    processes = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"gunicorn" in b" ".join(command) and f"127.0.0.1:{port}".encode() in command:
            processes[int(entry.name)] = parent
    masters = {pid for pid, parent in processes.items() if parent not in processes}
    return {pid for pid, parent in processes.items() if parent in masters}


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found
