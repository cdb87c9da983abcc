"""The counter backend of this process: Redis, or in DEMO_MODE the in-memory
one. This module imports both backends; they import only the contract
(``quotas.contract``), so nothing imports its way back here."""

from __future__ import annotations

import functools

from django.conf import settings

from quotas.contract import Backend
from quotas.memory import MemoryBackend
from quotas.redis_backend import RedisBackend


def get_backend() -> Backend:
    """The counter backend for the current settings (``DEMO_MODE`` read at
    call time). One instance of each per process."""
    return _backend(settings.DEMO_MODE)


@functools.cache
def _backend(demo_mode: bool) -> Backend:
    return MemoryBackend() if demo_mode else RedisBackend()


def reset_backends() -> None:
    """Forget the instances (tests: a fresh in-memory backend)."""
    _backend.cache_clear()
