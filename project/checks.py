"""System checks for the Redis and storage configuration.

``manage.py check --deploy`` (run by the release phase) reports a missing or
malformed ``REDIS_URL`` and an unreachable Redis as errors, so a deploy stops
before the new release serves. Plain ``check`` stays offline.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from redis.exceptions import RedisError

from project.redis import queue_is_split, roles

E001 = "REDIS_URL is not set; Tollgate needs Redis unless DEMO_MODE=true."
E001_PROBLEM = "REDIS_URL environment variable is required"
E002 = "The Redis configuration cannot work: {problem}."
E003 = "Redis at {url} is unreachable: {error}."
W001 = "Uploads and error reports are stored on this host's disk (MEDIA_ROOT)."


@register(Tags.caches, deploy=True)
def check_redis(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Both Redis roles (counters, queue) are configured and answer."""
    if settings.DEMO_MODE:
        return []
    counters_role, queue_role = roles(settings)
    if counters_role.problem == E001_PROBLEM:
        return [
            Error(
                E001,
                hint="Set REDIS_URL (Heroku Key-Value Store and Render Key Value set it for you).",
                id="project.E001",
            )
        ]
    errors = [
        Error(E002.format(problem=r.problem), id="project.E002") for r in (counters_role, queue_role) if r.problem
    ]
    if errors:
        return errors
    from quotas.backends import get_backend
    from validation.queue import get_queue_service

    probes = [(counters_role, get_backend().ping)]
    if queue_is_split(settings):
        probes.append((queue_role, get_queue_service().ping))
    for role, probe in probes:
        try:
            probe()
        except (RedisError, OSError) as exc:
            errors.append(
                Error(
                    E003.format(url=role.display(), error=type(exc).__name__),
                    hint="Check the address and password, and for rediss:// the TLS settings.",
                    id="project.E003",
                )
            )
    return errors


@register(deploy=True)
def check_storage(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """On a platform the web and the worker have disks of their own: jobs
    would fail ``storage_unavailable`` without a shared bucket."""
    if settings.DEMO_MODE or settings.STORAGES["default"]["BACKEND"] != "django.core.files.storage.FileSystemStorage":
        return []
    return [
        Warning(
            W001,
            hint="The worker must see the same files: on Heroku and Render set AWS_STORAGE_BUCKET_NAME "
            "(and the bucket's AWS_* variables) for both processes.",
            id="project.W001",
        )
    ]
