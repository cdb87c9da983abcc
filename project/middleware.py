"""Turns API errors and faults into the one JSON error shape, in one place;
and answers health probes before anything validates their Host."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from health import views as health_views
from health.metrics import metrics_view
from project.database import database_unavailable
from project.errors import ApiError, ServiceUnavailable
from project.metrics import count_redis_error

log = logging.getLogger("tollgate.api")

API_PREFIX = "/api/"


class ApiErrorMiddleware:
    """Under ``/api/``: an :class:`ApiError` becomes its JSON response, and a
    Redis or a database that is down, hung or too slow becomes a 503
    ``service_unavailable`` with ``Retry-After`` instead of a 500 (the
    database's logged once per outage, ``project.database``). Other paths are
    left to Django."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, ApiError):
            return exception.response()
        if isinstance(exception, (RedisConnectionError, RedisTimeoutError)):
            log.warning("Redis unavailable while serving %s: %s", request.path, exception)
            count_redis_error("api")
            return ServiceUnavailable("Redis did not answer; retry shortly.").response()
        if isinstance(exception, (OperationalError, InterfaceError)):
            return database_unavailable(exception).response()
        return None


class HealthProbeMiddleware:
    """Serves ``GET /health``, ``/health/ready`` and ``/health/live`` before
    any other middleware, so that no ``ALLOWED_HOSTS`` check refuses a
    platform's probe (Render's and Kubernetes' may send an internal address;
    a custom domain must not break them). The answers reveal no addresses.
    ``GET /metrics`` too: a scraper may use an internal address as well, and
    ``METRICS_TOKEN`` guards it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.probes: dict[str, Callable[[HttpRequest], HttpResponse]] = {
            "/health": health_views.health,
            "/health/ready": health_views.health,
            "/health/live": health_views.live,
            # Scrapers use internal addresses too; the token guards it.
            "/metrics": metrics_view,
        }

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = self.probes.get(request.path_info)
        if probe is not None and request.method == "GET":
            return probe(request)
        return self.get_response(request)
