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

from project.redis import display_url, url_problem

E001 = "REDIS_URL is not set; Tollgate needs Redis unless DEMO_MODE=true."
E002 = "REDIS_URL is not a Redis URL: {problem}."
E003 = "Redis at {url} is unreachable: {error}."
W001 = "Uploads and error reports are stored on this host's disk (MEDIA_ROOT)."


@register(Tags.caches, deploy=True)
def check_redis(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    if settings.DEMO_MODE:
        return []
    url = settings.REDIS_URL
    if not url:
        return [
            Error(
                E001,
                hint="Set REDIS_URL (Heroku Key-Value Store and Render Key Value set it for you).",
                id="project.E001",
            )
        ]
    problem = url_problem(url)
    if problem:
        return [Error(E002.format(problem=problem), id="project.E002")]
    from quotas.backends import get_backend

    try:
        get_backend().ping()
    except (RedisError, OSError) as exc:
        return [
            Error(
                E003.format(url=display_url(url), error=type(exc).__name__),
                hint="Check the address and password, and for rediss:// the TLS settings.",
                id="project.E003",
            )
        ]
    return []


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
