"""rediss:// verifies the server's certificate by default; ?ssl_cert_reqs=none
(Heroku's self-signed certificates) is honoured. Against a real TLS redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import service_env
from tests.redis_server import RedisServer
from tests.test_redis_mandatory import load_wsgi


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[RedisServer]:
    server = RedisServer(tls=True).start()
    yield server
    server.stop()


def test_self_signed_certificate_is_refused_by_default(tls_redis: RedisServer) -> None:
    result = load_wsgi(service_env(REDIS_URL=tls_redis.url))
    assert result.returncode != 0
    assert f"❌ Failed to connect to Redis at rediss://127.0.0.1:{tls_redis.port}/0" in result.stderr


def test_ssl_cert_reqs_none_is_honoured(tls_redis: RedisServer) -> None:
    result = load_wsgi(service_env(REDIS_URL=f"{tls_redis.url}?ssl_cert_reqs=none"))
    assert result.returncode == 0, result.stderr
    assert f"✓ Redis counter backend connected: 127.0.0.1:{tls_redis.port}" in result.stderr


def test_a_trusted_certificate_verifies(tls_redis: RedisServer) -> None:
    result = load_wsgi(service_env(REDIS_URL=f"{tls_redis.url}?ssl_ca_certs={tls_redis.certificate}"))
    assert result.returncode == 0, result.stderr
    assert "✓ Queue service initialized" in result.stderr


def test_redis_ssl_cert_reqs_none_is_honoured_without_touching_the_url(tls_redis: RedisServer) -> None:
    result = load_wsgi(service_env(REDIS_URL=tls_redis.url, REDIS_SSL_CERT_REQS="none"))
    assert result.returncode == 0, result.stderr
    assert f"✓ Redis counter backend connected: 127.0.0.1:{tls_redis.port}" in result.stderr
