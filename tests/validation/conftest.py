"""Fixtures of the validation tests: private storage, clean caches, keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.conftest import bearer
from tests.factories import issue_key
from validation.schemas import validators

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "qty", "email"],
    "properties": {
        "id": {"type": "integer"},
        "qty": {"type": "integer", "minimum": 1},
        "email": {"type": "string", "format": "email"},
        "price": {"type": "number"},
        "gift": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
    },
}


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """Uploads and reports go to a directory of this test."""
    settings.MEDIA_ROOT = tmp_path / "media"
    validators.clear()
    yield settings.MEDIA_ROOT
    validators.clear()


def stored_files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()) if root.exists() else []


class Api:
    """A test client bound to one key, with JSON helpers."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.client = Client(**bearer(key))

    def post(self, path: str, data: Any, **extra: Any) -> Any:
        return self.client.post(path, data, content_type="application/json", **extra)

    def register(self, name: str, version: str, schema: Any) -> Any:
        return self.post("/api/v1/schemas", {"name": name, "version": version, "schema": schema})

    def get(self, path: str, **extra: Any) -> Any:
        return self.client.get(path, **extra)


@pytest.fixture
def api(db: None) -> Api:
    return Api(issue_key(rate_limits="1000/s", quotas="100000/day", max_sync_instances=50).key)
