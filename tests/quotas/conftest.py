from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test.utils import override_settings

from quotas import limiter
from quotas.limiter import Backend, get_backend

MEMORY_CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture(params=["redis", "memory"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each behaviour test runs against the Redis backend (the suite's private
    redis-server) and the DEMO_MODE in-memory backend."""
    if request.param == "redis":
        yield get_backend()
        return
    limiter._backend.cache_clear()  # a fresh in-memory backend for each test
    with override_settings(DEMO_MODE=True, CACHES=MEMORY_CACHES):
        yield get_backend()
    limiter._backend.cache_clear()
