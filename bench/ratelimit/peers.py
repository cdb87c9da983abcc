"""The peers' endpoints: ``/bench/<peer>/ping`` and ``/bench/<peer>/burst``.

Each endpoint is the same plain view as Tollgate's ``/api/v1/ping``
(``api_view``, ``json_response({"pong": True})``) with one rate-limit check
in front: the ``Authorization`` header is the rate-limit key (401
``missing_api_key`` without one, like Tollgate), and a request over the limit
gets 429 ``rate_limited``. The checks call each library the way its own
decorator or view machinery does, with nothing added:

- django-ratelimit: ``is_ratelimited(..., increment=True)``, the core of its
  ``@ratelimit`` decorator (fixed window, ``cache.add`` then ``cache.incr``
  on the django-redis cache);
- limits: ``FixedWindowRateLimiter.hit`` on its Redis storage;
- DRF: a ``SimpleRateThrottle`` keyed on the API key, instantiated per request
  as ``APIView.get_throttles`` does (a sliding log read with ``cache.get`` and
  written back with ``cache.set``). DRF's ``APIView`` itself (request wrapper,
  content negotiation) is left out, so only the throttle is measured.

Peers do not check the key against the database, which Tollgate does (from
its per-process cache); that favours the peers slightly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_ratelimit.core import is_ratelimited
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from rest_framework.throttling import SimpleRateThrottle

from project.api import api_view, json_response
from project.errors import error_response
from quotas.exceptions import MissingApiKey

# (request, key, limit name) -> admitted? Each call consumes one request.
Admits = Callable[[HttpRequest, str, str], bool]

_DRF_PERIODS = {1: "s", 60: "m", 3600: "h", 86400: "d"}


def _limit(name: str) -> tuple[int, int]:
    count, period = settings.BENCH_PEER_LIMITS[name]
    return int(count), int(period)


def django_ratelimit_admits(request: HttpRequest, key: str, name: str) -> bool:
    return not is_ratelimited(
        request, group=f"bench-{name}", key="header:authorization", rate=_limit(name), increment=True
    )


@functools.cache
def _limits_limiter() -> FixedWindowRateLimiter:
    # Built on first use, in the gunicorn worker (after the fork).
    return FixedWindowRateLimiter(storage_from_string(settings.REDIS_URL))


@functools.cache
def _limits_item(name: str) -> RateLimitItemPerSecond:
    count, period = _limit(name)
    return RateLimitItemPerSecond(count, period)


def limits_admits(request: HttpRequest, key: str, name: str) -> bool:
    return _limits_limiter().hit(_limits_item(name), "bench", key)


class ApiKeyRateThrottle(SimpleRateThrottle):
    """DRF's ``UserRateThrottle`` keyed on the API key instead of the user."""

    def __init__(self, name: str) -> None:
        self.scope = f"bench-{name}"
        count, period = _limit(name)
        self.rate = f"{count}/{_DRF_PERIODS[period]}"
        super().__init__()

    def get_cache_key(self, request: HttpRequest, view: object) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.META["HTTP_AUTHORIZATION"]}


def drf_admits(request: HttpRequest, key: str, name: str) -> bool:
    return ApiKeyRateThrottle(name).allow_request(request, None)  # type: ignore[arg-type]


PEERS: dict[str, Admits] = {
    "django-ratelimit": django_ratelimit_admits,
    "limits": limits_admits,
    "drf": drf_admits,
}


def limited_ping(admits: Admits, name: str) -> Callable[[HttpRequest], HttpResponse]:
    """Tollgate's ping view behind ``admits`` with the limit ``name``."""

    @api_view("GET", "HEAD")
    def ping(request: HttpRequest) -> HttpResponse:
        key = request.META.get("HTTP_AUTHORIZATION", "")
        if not key:
            return MissingApiKey().response()
        if not admits(request, key, name):
            return error_response(429, "rate_limited", "Rate limit exceeded.")
        return json_response({"pong": True})

    return ping
