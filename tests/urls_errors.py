"""A URLconf for tests/test_secrets.py: views that fail while holding secrets."""

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

from project.urls import handler500  # noqa: F401  (the API's, as in production)


def fail_with_redis_url(request: HttpRequest) -> HttpResponse:
    url = settings.REDIS_URL
    client = redis.Redis.from_url(url)
    connection_kwargs = client.connection_pool.connection_kwargs
    raise RuntimeError(f"could not use {url} ({connection_kwargs})")


urlpatterns = [path("boom", fail_with_redis_url), path("api/v1/boom", fail_with_redis_url)]
