"""The one Redis configuration, shared by the counters (django-redis) and RQ.

Everything here is pure configuration: it builds options from a URL and renders
that URL for humans without its password. It never opens a connection.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.backoff import NoBackoff
from redis.connection import ConnectionPool
from redis.retry import Retry

SCHEMES = ("redis", "rediss", "unix")
# TLS certificate checks of rediss:// (REDIS_SSL_CERT_REQS), the default first.
SSL_CERT_REQS = ("required", "optional", "none")

# redis-py waits up to a minute by default and retries three times with backoff;
# a request must never be held more than about a second by a hung Redis. A
# quarter of a second is ~1000x a loopback round trip and ~50x a cross-zone one.
CONNECT_TIMEOUT = 0.25
SOCKET_TIMEOUT = 0.25
# One retry absorbs a connection the server closed while idle (a failover, a
# proxy timeout) without doubling the wait more than once.
RETRIES = 1
# An idle connection is PINGed before reuse after this many seconds, so a
# connection killed while idle is replaced instead of failing a request. Busy
# connections never pay for it.
HEALTH_CHECK_INTERVAL = 15

_CREDENTIALS = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:@/\s]*:)(?P<password>[^@\s]+)@", re.I)


def url_problem(url: str) -> str | None:
    """Return why ``url`` cannot be a Redis URL, or None when it can."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        return (
            f"REDIS_URL must start with redis://, rediss:// or unix:// "
            f"(got {scheme + '://' if scheme else 'no scheme'})"
        )
    return None


def display_url(url: str) -> str:
    """``url`` normalised to ``redis://HOST:PORT/DB`` with any password as ``***``."""
    parts = urlsplit(url)
    db = parse_qs(parts.query).get("db", [parts.path.strip("/") or "0"])[0]
    auth = ""
    if parts.password is not None:
        auth = f"{parts.username or ''}:***@"
    elif parts.username:
        auth = f"{parts.username}@"
    if parts.scheme == "unix":
        return f"unix://{auth}{parts.path}?db={db}"
    return f"{parts.scheme}://{auth}{parts.hostname or 'localhost'}:{parts.port or 6379}/{db}"


def display_address(url: str) -> str:
    """``HOST:PORT`` (or the socket path) of ``url``, never its credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with URL passwords and each of ``secrets`` replaced by ``***``."""
    text = _CREDENTIALS.sub(r"\g<head>***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def password_of(url: str) -> str:
    """The password in ``url``, or an empty string."""
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def connection_pool_kwargs(url: str, ssl_cert_reqs: str = "required") -> dict[str, Any]:
    """Options for every connection pool built from ``url``.

    ``rediss://`` verifies the server's certificate as ``ssl_cert_reqs``
    says (``REDIS_SSL_CERT_REQS``: ``required`` unless set to ``none`` for
    Heroku's self-signed certificates); a ``?ssl_cert_reqs=`` in the URL
    itself still wins, since redis-py lets the URL's query override these
    keyword arguments.
    """
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), RETRIES),
        "health_check_interval": HEALTH_CHECK_INTERVAL,
    }
    if urlsplit(url).scheme == "rediss":
        kwargs["ssl_cert_reqs"] = ssl_cert_reqs
    return kwargs


class _PinnedTimeouts(dict[str, Any]):
    """Connection options whose timeouts, once set, cannot be changed."""

    PINNED = ("socket_timeout", "socket_connect_timeout")

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.PINNED or key not in self:
            super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


class PinnedTimeoutConnectionPool(ConnectionPool):
    """The shared pool, whose short timeouts nothing can raise.

    RQ raises the socket timeout of the pool of every ``Worker`` object it
    builds (to wait on its blocking dequeue), and django-rq's dashboard builds
    them to list workers: on a pool shared with the counters that would let a
    hung Redis hold web requests for minutes. The worker process gets a pool
    of its own instead (``validation.worker``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection_kwargs = _PinnedTimeouts(self._connection_kwargs)


def cache_config(url: str, ssl_cert_reqs: str = "required") -> dict[str, Any]:
    """The ``CACHES["default"]`` entry for ``url`` (django-redis)."""
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "tg-cache",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "CONNECTION_POOL_CLASS": "project.redis.PinnedTimeoutConnectionPool",
            "CONNECTION_POOL_KWARGS": connection_pool_kwargs(url, ssl_cert_reqs),
        },
    }
