"""Job functions that the tests' RQ workers run (importable by path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Set by a test: called while a worker runs ``call_hook``, i.e. while that job
# is started and its worker busy.
hook: Callable[[], Any] | None = None
seen: list[Any] = []


def call_hook() -> None:
    if hook is not None:
        seen.append(hook())


def succeed() -> str:
    return "ok"


def fail() -> None:
    raise RuntimeError("this job fails on purpose")
