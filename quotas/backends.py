"""The counter backend of this process: Redis, or in DEMO_MODE the in-memory
one. This module imports both backends; they import only the contract
(``quotas.contract``), so nothing imports its way back here."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from quotas.contract import Backend
from quotas.flusher import Flusher
from quotas.memory import MemoryBackend
from quotas.redis_backend import RedisBackend


class _Current:
    """The backend ``DEMO_MODE`` picked, until the setting changes (tests)."""

    backend: Backend | None = None


_CURRENT = _Current()


def get_backend() -> Backend:
    """The counter backend for the current settings. One instance of each
    per process."""
    backend = _CURRENT.backend
    if backend is None:
        backend = _CURRENT.backend = _backend(settings.DEMO_MODE)
    return backend


@functools.cache
def _backend(demo_mode: bool) -> Backend:
    return MemoryBackend() if demo_mode else RedisBackend()


@receiver(setting_changed)
def _demo_mode_changed(setting: str, **kwargs: Any) -> None:
    if setting == "DEMO_MODE":
        _CURRENT.backend = None


def reset_backends() -> None:
    """Forget the instances (tests: a fresh in-memory backend)."""
    _backend.cache_clear()
    _CURRENT.backend = None


@functools.cache
def process_flusher() -> Flusher:
    """This process's ledger flusher, on the current backend (started by
    whoever hosts it: the RQ worker, or DEMO_MODE's startup)."""
    return Flusher(backend=get_backend)
