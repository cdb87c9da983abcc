"""Bench settings without Tollgate's enforcement: ``QuotaMiddleware`` removed.

Serves the unmetered baseline (``/api/v1/ping`` with no key check and no
Redis) and the peers, which do their own limiting in their views.
"""

from bench.ratelimit.settings import *  # noqa: F403
from bench.ratelimit.settings import MIDDLEWARE

MIDDLEWARE = [name for name in MIDDLEWARE if name != "quotas.middleware.QuotaMiddleware"]
