"""The connection ``RedisBackend.charge`` keeps per thread and process: reused
while the settings and the process are the same, replaced when either changes,
reconnected after Redis restarts, and never retried after a timeout."""

from __future__ import annotations

import os
import threading
import time

import pytest
from django.test.utils import override_settings
from redis.exceptions import TimeoutError as RedisTimeoutError

from project.redis import cache_config
from quotas.codec import encode
from quotas.contract import ONE, PEEK, Subject
from quotas.policy import parse_rates
from quotas.redis_backend import RedisBackend
from tests.redis_server import RedisServer


def now_ms() -> int:
    return int(time.time() * 1000)


def subject(backend: RedisBackend, account_id: int = 1, rates: str = "10/s") -> Subject:
    return Subject(account_id, account_id * 10, backend.generation(account_id), parse_rates(rates), ())


def test_encode_is_the_redis_protocol() -> None:
    assert encode(b"SET", "k", 12) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"


def test_the_connection_is_kept_between_charges(redis_server: RedisServer) -> None:
    backend = RedisBackend()
    connection = backend.connection()
    assert backend.charge(subject(backend), ONE, now_ms()).allowed
    assert backend.connection() is connection
    assert redis_server.client().info("clients")["connected_clients"] >= 1


def test_a_new_cache_configuration_gets_its_own_connection(redis_server: RedisServer, own_redis: RedisServer) -> None:
    backend = RedisBackend()
    own = backend.connection()
    assert own.port == own_redis.port
    with override_settings(CACHES={"default": cache_config(redis_server.url)}):
        shared = backend.connection()
    assert shared is not own and shared.port == redis_server.port


def test_each_thread_keeps_its_own_connection(redis_server: RedisServer) -> None:
    backend = RedisBackend()
    seen = []
    thread = threading.Thread(target=lambda: seen.append(backend.connection()))
    thread.start()
    thread.join()
    assert seen[0] is not backend.connection()


def test_a_forked_child_does_not_use_its_parents_connection(redis_server: RedisServer) -> None:
    backend = RedisBackend()
    who = subject(backend)
    parent = backend.connection()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        ok = False
        try:
            ok = backend.connection() is not parent and backend.charge(who, ONE, now_ms()).allowed
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert backend.connection() is parent and backend.charge(who, ONE, now_ms()).allowed


def test_the_kept_connection_reconnects_after_a_redis_restart(own_redis: RedisServer) -> None:
    backend = RedisBackend()
    assert backend.charge(subject(backend, 2), ONE, now_ms()).allowed
    own_redis.restart()  # the kept socket is now dead; the script is gone
    assert backend.charge(subject(backend, 2), ONE, now_ms()).allowed


def test_a_timeout_is_not_retried_so_a_charge_never_counts_twice(own_redis: RedisServer) -> None:
    backend = RedisBackend()
    who = subject(backend, 3, "10/h")
    assert backend.charge(who, ONE, now_ms()).allowed
    own_redis.pause()
    try:
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            backend.charge(who, ONE, now_ms())
        elapsed = time.monotonic() - started
    finally:
        own_redis.resume()
    assert elapsed < 0.45  # one socket timeout (0.25 s), no second attempt
    time.sleep(0.05)  # the paused Redis now runs the one charge it had received
    peek = backend.charge(who, PEEK, now_ms())
    assert peek.states[0].remaining == 8  # 10 - the first charge - the timed-out one, once
