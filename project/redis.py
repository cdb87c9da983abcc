"""The Redis configuration of the counters (django-redis) and RQ: the same
options for both roles, each reachable by URL or through Sentinel, and the
counters also on a Redis Cluster.

Everything here is pure configuration: it builds options from a URL and renders
that URL for humans without its password. It never opens a connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django_redis.pool import SentinelConnectionFactory as DjangoRedisSentinelFactory
from redis.backoff import NoBackoff
from redis.connection import ConnectionPool, SSLConnection
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool
from redis.sentinel import SentinelManagedConnection as RedisSentinelManagedConnection

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


# --- Roles: where the counters' Redis and the queue's Redis are -------------
# The counters (quotas) and the queue (RQ) are two roles, each reachable by
# URL or through Sentinel; the counters may also be a Redis Cluster (RQ
# cannot: it needs one node for its multi-key commands). The queue role is
# the counters' own configuration unless QUEUE_REDIS_URL or
# QUEUE_REDIS_SENTINEL_MASTER says otherwise.

KINDS = ("url", "sentinel", "cluster", "unset")
# Stands in for a missing Redis so that build commands load the settings;
# nothing connects to it until the startup gate, which refuses first.
PLACEHOLDER_URL = "redis://unset.invalid:6379/0"


@dataclass(frozen=True)
class Role:
    """One role's Redis: ``kind`` is ``url`` (``url``), ``sentinel`` (the
    master named ``master``, found through the Sentinels at ``nodes``),
    ``cluster`` (seed ``nodes``) or ``unset``; ``problem`` says why the
    configuration cannot work, or is None. Passwords are never shown."""

    name: str
    kind: str
    url: str = field(default="", repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    password: str = field(default="", repr=False)
    sentinel_password: str = field(default="", repr=False)
    tls: bool = False
    problem: str | None = None

    def display(self) -> str:
        """Where this role's Redis is, for humans and logs (no password)."""
        if self.kind == "url":
            return display_url(self.url)
        hosts = ",".join(f"{host}:{port}" for host, port in self.nodes)
        scheme = "s" if self.tls else ""
        if self.kind == "sentinel":
            return f"sentinel{scheme}://{hosts}/{self.master}/{self.db}"
        if self.kind == "cluster":
            return f"cluster{scheme}://{hosts}"
        return "unset"

    def address(self) -> str:
        """``HOST:PORT`` for a URL, else :meth:`display`."""
        return display_address(self.url) if self.kind == "url" else self.display()

    @property
    def uses_tls(self) -> bool:
        return self.tls or (self.kind == "url" and urlsplit(self.url).scheme == "rediss")

    def secrets(self) -> tuple[str, ...]:
        """Every password of this role, for redaction."""
        return tuple(s for s in (password_of(self.url), self.password, self.sentinel_password) if s)


def parse_nodes(value: str, variable: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` as pairs; ValueError naming ``variable``."""
    nodes = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{variable} must list host:port pairs separated by commas (got {item!r})")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError(f"{variable} lists no host:port")
    return tuple(nodes)


def _setting(source: Any, name: str) -> Any:
    value = getattr(source, name, "")
    return value.strip() if isinstance(value, str) else value


def counters_role(source: Any) -> Role:
    """The counters' Redis from ``source`` (the settings): ``REDIS_URL``,
    ``REDIS_SENTINELS`` with ``REDIS_SENTINEL_MASTER``, or
    ``REDIS_CLUSTER_NODES``; exactly one of them."""
    url, sentinels, cluster = (_setting(source, n) for n in ("REDIS_URL", "REDIS_SENTINELS", "REDIS_CLUSTER_NODES"))
    password: str = _setting(source, "REDIS_PASSWORD") or ""
    tls = bool(_setting(source, "REDIS_TLS"))
    db = int(_setting(source, "REDIS_DB") or 0)
    given = [
        name
        for name, value in (("REDIS_URL", url), ("REDIS_SENTINELS", sentinels), ("REDIS_CLUSTER_NODES", cluster))
        if value
    ]
    if len(given) > 1:
        return Role("counters", "unset", problem=f"set only one of {', '.join(given)}")
    if url:
        return Role("counters", "url", url=url, problem=url_problem(url))
    if sentinels:
        master = _setting(source, "REDIS_SENTINEL_MASTER")
        try:
            nodes = parse_nodes(sentinels, "REDIS_SENTINELS")
        except ValueError as exc:
            return Role("counters", "unset", problem=str(exc))
        problem = (
            None
            if master
            else "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the name of the master the Sentinels monitor)"
        )
        return Role(
            "counters",
            "sentinel",
            nodes=nodes,
            master=master,
            sentinel_password=_setting(source, "REDIS_SENTINEL_PASSWORD") or "",
            problem=problem,
            password=password,
            tls=tls,
            db=db,
        )
    if cluster:
        try:
            nodes = parse_nodes(cluster, "REDIS_CLUSTER_NODES")
        except ValueError as exc:
            return Role("counters", "unset", problem=str(exc))
        return Role("counters", "cluster", nodes=nodes, password=password, tls=tls)
    return Role("counters", "unset", problem="REDIS_URL environment variable is required")


def queue_role(source: Any, counters: Role | None = None) -> Role:
    """The queue's Redis: ``QUEUE_REDIS_URL``; or ``QUEUE_REDIS_SENTINEL_MASTER``
    through the counters' Sentinels; or else the counters' own configuration
    (a Cluster cannot hold RQ's queues: then ``QUEUE_REDIS_URL`` is required)."""
    counters = counters_role(source) if counters is None else counters
    url = _setting(source, "QUEUE_REDIS_URL")
    master = _setting(source, "QUEUE_REDIS_SENTINEL_MASTER")
    if url:
        problem = url_problem(url)
        return Role("queue", "url", url=url, problem=problem and problem.replace("REDIS_URL", "QUEUE_REDIS_URL"))
    if master:
        if counters.kind != "sentinel":
            return Role("queue", "unset", problem="QUEUE_REDIS_SENTINEL_MASTER needs REDIS_SENTINELS")
        return replace(counters, name="queue", master=master, problem=None)
    if counters.kind == "cluster":
        return Role(
            "queue",
            "unset",
            problem="QUEUE_REDIS_URL is required with REDIS_CLUSTER_NODES (RQ does not support Redis Cluster)",
        )
    return replace(counters, name="queue")


def roles(source: Any) -> tuple[Role, Role]:
    """The counters' role and the queue's, from ``source`` (the settings)."""
    counters = counters_role(source)
    return counters, queue_role(source, counters)


def queue_is_split(source: Any) -> bool:
    """Whether the queue has a configuration of its own (else it shares the
    counters' connection pool)."""
    return bool(_setting(source, "QUEUE_REDIS_URL") or _setting(source, "QUEUE_REDIS_SENTINEL_MASTER")) or bool(
        _setting(source, "REDIS_CLUSTER_NODES")
    )


class SentinelConnectionFactory(DjangoRedisSentinelFactory):  # type: ignore[type-arg]
    """django-redis's, with its pools kept per master *and* Sentinels
    (django-redis keeps them per URL, which holds only the master's name)."""

    def get_or_create_connection_pool(self, params: dict[str, Any]) -> Any:
        key = f"{params['url']}#{self.options.get('SENTINELS')}"
        if key not in self._pools:
            self._pools[key] = self.get_connection_pool(params)
        return self._pools[key]


class SentinelManagedConnection(RedisSentinelManagedConnection):
    """redis-py's connection to the master a Sentinel names, asking the
    Sentinels again on *every* reconnect.

    redis-py (8.1) asks them only in ``connect()``; a command sent on a
    connection that was closed (the master died under it) reconnects through
    ``connect_check_health()`` to the address it had, the dead master's,
    forever. A kept connection (the counters' hot path) would never follow
    a failover."""

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._sock:
            return
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)

    def connect_to(self, address: tuple[str, int]) -> None:
        # The address was just asked for: connect without asking again.
        self.host, self.port = address
        super().connect_check_health(check_health=self.connection_pool.check_connection, retry_socket_connect=False)

    def _connect_retry(self) -> None:
        if self._sock:
            return
        if self.connection_pool.is_master:
            self.connect_check_health(check_health=self.connection_pool.check_connection, retry_socket_connect=False)
        else:
            super()._connect_retry()


class SentinelManagedSSLConnection(SentinelManagedConnection, SSLConnection):
    pass


class PinnedTimeoutSentinelConnectionPool(SentinelConnectionPool):
    """:class:`PinnedTimeoutConnectionPool` for a master found through Sentinel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection_kwargs = _PinnedTimeouts(self._connection_kwargs)


def _tls_kwargs(ssl_cert_reqs: str) -> dict[str, Any]:
    return {"ssl": True, "ssl_cert_reqs": ssl_cert_reqs}


def role_cache_config(role: Role, ssl_cert_reqs: str = "required") -> dict[str, Any]:
    """The django-redis ``CACHES`` entry that reaches ``role``'s Redis: by
    URL, or through Sentinel (django-redis's ``SentinelConnectionFactory``,
    whose pool asks the Sentinels for the master on every new connection).
    A Cluster or an unset role gets the placeholder (the counters' Cluster
    client is built by ``quotas.cluster``)."""
    if role.kind == "url" and not role.problem:
        return cache_config(role.url, ssl_cert_reqs)
    if role.kind != "sentinel" or role.problem:
        return cache_config(PLACEHOLDER_URL, ssl_cert_reqs)
    pool_kwargs = connection_pool_kwargs("redis://", ssl_cert_reqs)
    pool_kwargs["connection_class"] = SentinelManagedConnection
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}
    if role.password:
        pool_kwargs["password"] = role.password
    if role.sentinel_password:
        sentinel_kwargs["password"] = role.sentinel_password
    if role.tls:
        pool_kwargs.update(connection_class=SentinelManagedSSLConnection, ssl_cert_reqs=ssl_cert_reqs)
        sentinel_kwargs.update(_tls_kwargs(ssl_cert_reqs))
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        # django-redis reads the master's name from the URL's host.
        "LOCATION": f"redis://{role.master}/{role.db}",
        "KEY_PREFIX": "tg-cache",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "CONNECTION_FACTORY": "project.redis.SentinelConnectionFactory",
            "CONNECTION_POOL_CLASS": "project.redis.PinnedTimeoutSentinelConnectionPool",
            "CONNECTION_POOL_KWARGS": pool_kwargs,
            "SENTINELS": list(role.nodes),
            "SENTINEL_KWARGS": sentinel_kwargs,
        },
    }


def caches(source: Any, ssl_cert_reqs: str = "required") -> dict[str, dict[str, Any]]:
    """``CACHES``: ``default`` carries the counters' pool (Tollgate uses no
    Django cache otherwise), ``queue`` the queue's (RQ's ``USE_REDIS_CACHE``).
    With a Cluster for the counters, ``default`` is the queue's."""
    counters = counters_role(source)
    queue = queue_role(source, counters)
    queue_cache = role_cache_config(queue, ssl_cert_reqs)
    default = queue_cache if counters.kind == "cluster" else role_cache_config(counters, ssl_cert_reqs)
    return {"default": default, "queue": queue_cache}
