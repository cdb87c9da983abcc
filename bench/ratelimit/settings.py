"""Bench settings: the production settings plus the peers' apps and endpoints.

Every variant is served with this module (Tollgate enforcing) or with
``settings_unmetered`` (the same minus ``QuotaMiddleware``), so the only
difference between two variants is the rate limiter in the request path.
The peers are bench-only dependencies (requirements-dev.txt).
"""

from bench.ratelimit.plans import PEER_LIMITS
from project.settings import *  # noqa: F403
from project.settings import DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_ratelimit", "rest_framework"]
ROOT_URLCONF = "bench.ratelimit.urls"

# django-ratelimit and DRF count in the django-redis cache ("default"), as
# their documentation recommends; `limits` talks to REDIS_URL itself.
RATELIMIT_USE_CACHE = "default"

# The peers' limits (see plans.py for why they are what they are).
BENCH_PEER_LIMITS = PEER_LIMITS

# The bench's database is a throwaway SQLite file, which the project's
# settings open afresh for every request (CONN_MAX_AGE 0, for its file locks);
# in production (PostgreSQL, conn_max_age=600) a worker keeps its connection.
# Kept here too, so that a key record read costs what it costs in production
# (a fresh SQLite connection re-reads the schema: about 0.4 ms per request
# that reads a record).
DATABASES["default"]["CONN_MAX_AGE"] = 600
