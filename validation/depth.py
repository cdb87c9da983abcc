"""Nesting depth: checked on every input before the engine sees it.

JSON is parsed by orjson (linear; it stops by itself past 1024 levels) or split
by ``validation.formats`` (which counts brackets as it scans), and the parsed
value is then walked once, iteratively. Nothing here recurses, so no depth is
too deep to be refused cleanly.

- Instances (sync bodies, NDJSON lines, JSON-array items, CSV cells typed
  ``object``/``array``) may nest ``VALIDATION_MAX_DEPTH`` levels (default 64).
- Schemas may nest ``VALIDATION_MAX_SCHEMA_DEPTH`` JSON levels (default 128:
  a data model 64 levels deep, ``properties`` and a name per level).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

# Real documents (orders, events, configs) are rarely deeper than ten; 64
# leaves room for trees while keeping every recursive walk (ours, the
# engine's) shallow.
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_SCHEMA_DEPTH = 128


def max_depth() -> int:
    return int(getattr(settings, "VALIDATION_MAX_DEPTH", DEFAULT_MAX_DEPTH))


def max_schema_depth() -> int:
    return int(getattr(settings, "VALIDATION_MAX_SCHEMA_DEPTH", DEFAULT_MAX_SCHEMA_DEPTH))


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` deep (a scalar
    is 0, ``[]`` is 1, ``[[]]`` is 2). Iterative: no recursion limit."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))
    return False


def depth_message(limit: int, what: str = "The instance") -> str:
    return f"{what} is nested deeper than {limit} levels."
