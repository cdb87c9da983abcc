"""Where Tollgate's time goes in one request, measured in one process.

    .venv/bin/python bench/ratelimit/breakdown.py [--repeat 8] [--calls 2000]

Runs Django's WSGI handler in-process (no gunicorn, no HTTP) against a private
redis-server and a throwaway database, and times, in CPU and wall
microseconds per call, the whole request with and without QuotaMiddleware,
the same request with the Redis reply canned (Tollgate's own Python alone),
and each step of the path: key parsing and lookup, ARGV building, the
EVALSHA through redis-py, the decision and the headers. Cases alternate and
repeat; medians are printed, so a noisy neighbour moves every case alike.
CPU time is this process's only: what Redis spends is in run.py's report.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ratelimit.stack import base_env, seed_database  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

Case = Callable[[], object]


def measure(cases: dict[str, Case], repeat: int, calls: int) -> dict[str, tuple[float, float]]:
    """Median (CPU us, wall us) per call of each case, the cases interleaved."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for case in cases.values():  # warm every path first
        for _ in range(200):
            case()
    for _ in range(repeat):
        for name, case in cases.items():
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                case()
            samples[name].append(
                ((time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6)
            )
    return {
        name: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v)) for name, v in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)

    redis_server = RedisServer().start()
    env = base_env(Path(redis_server.directory))
    try:
        keys = seed_database(env)
        os.environ.update({**env, "REDIS_URL": redis_server.url})
        for name in ("DEBUG", "DEMO_MODE"):
            os.environ.pop(name, None)
        results = _run(keys["throughput_key"], redis_server.port, args.repeat, args.calls)
    finally:
        redis_server.stop()
    _print(results)
    return 0


def _run(key: str, redis_port: int, repeat: int, calls: int) -> dict[str, tuple[float, float]]:
    import warnings

    import django

    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import HttpResponse
    from django.test.utils import override_settings

    from quotas import codec, headers
    from quotas.backends import get_backend
    from quotas.contract import ONE
    from quotas.meter import process_meter
    from quotas.middleware import request_key
    from quotas.redis_backend import RedisBackend

    backend = get_backend()
    if not isinstance(backend, RedisBackend):
        raise RuntimeError("the breakdown needs the Redis backend (DEMO_MODE must be off)")
    backend.initialize()
    metered = WSGIHandler()
    with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != "quotas.middleware.QuotaMiddleware"]):
        unmetered = WSGIHandler()

    def request(handler: WSGIHandler, *, leases: bool = False) -> Case:
        def call() -> object:
            environ = {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": "/api/v1/ping",
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "8000",
                "HTTP_HOST": "127.0.0.1:8000",
                "HTTP_AUTHORIZATION": f"Bearer {key}",
                "wsgi.input": io.BytesIO(b""),
                "wsgi.url_scheme": "http",
                "wsgi.errors": sys.stderr,
            }
            # A plain attribute set (about a microsecond, the same in every case):
            # override_settings would cost more than what is measured.
            settings.RATELIMIT_LEASES = leases
            return b"".join(handler(environ, _start_response))  # type: ignore[arg-type]

        return call

    meter = process_meter()
    record = meter.authenticate(key)
    subject = record.subject
    now_ms = int(time.time() * 1000)
    command, _ = codec.command(subject, ONE, now_ms, backend._target)
    raw_reply = backend._send(backend._charge, command, subject.account_id)
    decision = backend.charge(subject, ONE, now_ms)
    pooled = backend.client()
    script = backend._charge
    meta = {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    class _Request:
        META = meta

    raw = socket.create_connection(("127.0.0.1", redis_port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def raw_round_trip() -> object:
        raw.sendall(command)
        return raw.recv(65536)

    def set_headers() -> object:
        response = HttpResponse()
        decision.headers = None
        for name, value in headers.decision_headers(decision).items():
            response[name] = value
        return response

    def fresh_headers() -> object:
        decision.headers = None
        return headers.decision_headers(decision)

    send = backend._send

    def canned(replacement: Callable[[object, bytes, int], object]) -> Case:
        tollgate = request(metered)

        def call() -> object:
            backend._send = replacement  # type: ignore[method-assign]
            try:
                return tollgate()
            finally:
                del backend._send

        return call

    # Tollgate's own Python alone (the reply canned), and what charge() cost
    # with redis-py's Script through a pooled client (a checkout per call).
    tollgate_canned = canned(lambda script, command, account_id: raw_reply)
    tollgate_pooled = canned(lambda script, command, account_id: pooled.execute_command(*_args(command)))

    results = measure(
        {
            "request, QuotaMiddleware off": request(unmetered),
            "request, Tollgate, leases off": request(metered),
            "request, Tollgate, leases on (one hot key)": request(metered, leases=True),
            "request, Tollgate, redis-py client, pooled": tollgate_pooled,
            "request, Tollgate, Redis reply canned": tollgate_canned,
            "request_key + authenticate (cached)": lambda: meter.authenticate(request_key(_Request())),  # type: ignore[arg-type]
            "codec.command": lambda: codec.command(subject, ONE, int(time.time() * 1000), backend._target),
            "get_redis_connection": backend.client,
            "EVALSHA via redis-py, pooled client": lambda: pooled.execute_command(*_args(command)),
            "EVALSHA via the kept connection (Tollgate)": lambda: send(script, command, subject.account_id),
            "EVALSHA on a raw socket": raw_round_trip,
            "codec.decode": lambda: codec.decode(raw_reply, len(subject.rates), len(subject.quotas)),
            "decision_headers": fresh_headers,
            "decision_headers set on a response": set_headers,
        },
        repeat,
        calls,
    )
    raw.close()
    return results


def _args(command: bytes) -> list[bytes]:
    """The arguments of a RESP command (to send it through redis-py)."""
    parts = command.split(b"\r\n")
    return [parts[i] for i in range(2, len(parts) - 1, 2)]


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Callable[[bytes], None]:
    return lambda data: None


def _print(results: dict[str, tuple[float, float]]) -> None:
    width = max(len(name) for name in results)
    print(f"{'per call (median)'.ljust(width)}   CPU us   wall us")
    for name, (cpu, wall) in results.items():
        print(f"{name.ljust(width)}  {cpu:7.1f}  {wall:8.1f}")
    off, on = results["request, QuotaMiddleware off"], results["request, Tollgate, leases off"]
    canned = results["request, Tollgate, Redis reply canned"]
    print()
    print(f"Tollgate adds {on[0] - off[0]:.1f} us CPU ({on[1] - off[1]:.1f} us wall) per request in this process:")
    print(f"  its own Python (Redis reply canned):  {canned[0] - off[0]:6.1f} us CPU")
    print(f"  the Redis round trip, client side:    {on[0] - canned[0]:6.1f} us CPU, {on[1] - canned[1]:.1f} us wall")


if __name__ == "__main__":
    raise SystemExit(main())
