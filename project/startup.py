"""The startup gate: no Redis, no service (unless DEMO_MODE says otherwise).

Called where a server or worker starts (``project.wsgi``, ``runserver``,
``rqworker``), never where a build command runs. The log lines are the seed's
contract and are matched by tests and by the README's troubleshooting section.
"""

from __future__ import annotations

import logging
import sys
import time

from django.conf import settings
from redis.exceptions import RedisError

from project.redis import display_address, display_url, url_problem

log = logging.getLogger("tollgate.startup")

# Exit status of a refused start. gunicorn treats 4 (its APP_LOAD_ERROR) as
# "halt the whole server" instead of booting workers forever.
EXIT_REFUSED = 4

_verified = False


class StartupRefused(Exception):
    """Redis is required and is missing, misconfigured or unreachable.
    ``str()`` is the log line to print, already free of secrets."""


def verify_backends() -> None:
    """Check the counter backend and the queue service once per process.

    In DEMO_MODE: warn that both are in memory and return. Otherwise require
    ``REDIS_URL``, retry an unreachable Redis for ``REDIS_STARTUP_WAIT``
    seconds, load the counter scripts and log what is connected. Raises
    :class:`StartupRefused`.
    """
    global _verified
    if _verified:
        return
    from quotas.backends import get_backend
    from validation.queue import get_queue_service

    if settings.DEMO_MODE:
        log.warning("⚠ Using in-memory counters (DEMO_MODE)")
        log.warning("⚠ Using in-memory queue (DEMO_MODE)")
        log.warning(
            "⚠ DEMO_MODE: counters and jobs live in this process only and are lost on "
            "restart; never use it in production"
        )
        _verified = True
        # In-memory counters are per process: each one flushes its own usage
        # to the ledger (the database), forked gunicorn workers too.
        from quotas.backends import process_flusher

        process_flusher().start(follow_forks=True)
        return

    url = settings.REDIS_URL
    if not url:
        raise StartupRefused("❌ Redis validation failed: REDIS_URL environment variable is required")
    problem = url_problem(url)
    if problem:
        raise StartupRefused(f"❌ Redis validation failed: {problem}")

    counters = get_backend()
    _wait_for(counters.ping, url)
    log.info("✓ Redis counter backend connected: %s", display_address(url))
    _wait_for(counters.initialize, url)
    log.info("✓ Counter backend initialized")

    queue = get_queue_service()
    _wait_for(queue.ping, url)
    log.info("✓ Redis queue service connected")
    log.info("✓ Queue service initialized")
    _verified = True


def _wait_for(probe, url: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + settings.REDIS_STARTUP_WAIT
    delay = 0.25
    while True:
        try:
            probe()
            return
        except (RedisError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                log.debug("last Redis error: %s", exc)
                raise StartupRefused(f"❌ Failed to connect to Redis at {display_url(url)}") from None
            log.info("Redis at %s not reachable yet (%s); retrying", display_url(url), type(exc).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def gate() -> None:
    """Run :func:`verify_backends`; on refusal log why and exit the process."""
    try:
        verify_backends()
    except StartupRefused as refusal:
        log.critical("%s", refusal)
        sys.exit(EXIT_REFUSED)
