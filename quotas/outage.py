"""The Redis-down rule: what API requests get while the counters' Redis does
not answer.

One :class:`Outage` per process (``quotas.meter`` owns it): after a failure,
a breaker skips Redis for ``seconds`` instead of making every request wait
for the timeout, so a hung Redis costs one slow request per process per
second; and ``RATELIMIT_FAIL_MODE`` decides what the request gets: ``closed``
(503 ``rate_limiter_unavailable`` with ``Retry-After: 1``) or ``open``
(served without limits, with a warning logged at most every ``warn_every``
seconds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from redis.exceptions import RedisError

from project.metrics import count_redis_error
from quotas.exceptions import LimiterUnavailable

log = logging.getLogger("tollgate.quotas")

# "Redis did not answer": redis-py's errors, and the socket errors a broken
# connection raises underneath them.
REDIS_DOWN = (RedisError, OSError)

BREAKER_SECONDS = 1.0
OPEN_WARNING_SECONDS = 10.0


class Outage:
    """A breaker and the fail mode, for one process."""

    def __init__(
        self,
        *,
        seconds: float = BREAKER_SECONDS,
        warn_every: float = OPEN_WARNING_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.warn_every = warn_every
        self.clock = clock
        self.open_until = float("-inf")
        self._warned_at = float("-inf")

    @property
    def is_open(self) -> bool:
        """Whether requests should skip Redis now."""
        return self.clock() < self.open_until

    def failed(self, exc: BaseException) -> None:
        """Redis just failed: open the breaker and log why (the exception's
        type only: its text may hold an address)."""
        self.open_until = self.clock() + self.seconds
        count_redis_error("limiter")
        log.warning("Redis unavailable for rate limiting: %s", type(exc).__name__)

    def fail_mode(self) -> None:
        """Apply RATELIMIT_FAIL_MODE to a request that cannot be metered:
        raises LimiterUnavailable (closed), or returns to serve it (open)."""
        if settings.RATELIMIT_FAIL_MODE != "open":
            raise LimiterUnavailable(retry_after=1)
        now = self.clock()
        if now - self._warned_at > self.warn_every:
            self._warned_at = now
            log.warning("RATELIMIT_FAIL_MODE=open: serving requests without rate limits while Redis is unavailable")
