from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test.utils import override_settings

from quotas.backends import get_backend, reset_backends
from quotas.contract import Backend

MEMORY_CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture(params=["redis", "memory"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each behaviour test runs against the Redis backend (the suite's private
    redis-server) and the DEMO_MODE in-memory backend."""
    if request.param == "redis":
        yield get_backend()
        return
    reset_backends()  # a fresh in-memory backend for each test
    with override_settings(DEMO_MODE=True, CACHES=MEMORY_CACHES):
        yield get_backend()
    reset_backends()


@pytest.fixture(autouse=True)
def _ledger(db: None) -> None:
    """A missing account hash is restored from the usage ledger (the
    database) before the account is charged: every counter test may read it."""
