"""Tollgate's work per request in CPU instructions, which no neighbour moves.

    .venv/bin/python bench/ratelimit/instructions.py [--root CHECKOUT] [--requests 1000]

Runs Django's WSGI handler in one process (no gunicorn, no HTTP) under
valgrind's cachegrind, against a private redis-server and a throwaway
database, twice per case: ``--requests`` more requests the second time, so
that the difference divided by them is the instructions one request costs,
start-up and warm-up cancelled out. Cases:

- ``unmetered``: ``/api/v1/ping`` without ``QuotaMiddleware``;
- ``tollgate, leases off``: with it, one ``EVALSHA`` per request;
- ``tollgate, Redis reply canned``: the same with the round trip replaced by
  the reply it gave (Tollgate's own Python alone);
- ``tollgate, leases on``: one hot key, leases on;
- ``..., metrics on``: the two above with ``METRICS_TOKEN`` set and
  prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``), as
  gunicorn serves them: what recording each request costs, against what
  metering it costs.

``--root`` measures another checkout of the project (e.g. a worktree of an
older commit, to compare before and after with the same method); the cases
it cannot run are left out. Needs valgrind (Debian package ``valgrind``).
Takes a few minutes: every run is about 50 times slower under valgrind.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ratelimit.stack import base_env, seed_database  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

CASES = {
    "unmetered": "unmetered",
    "tollgate, leases off": "off",
    "tollgate, Redis reply canned": "canned",
    "tollgate, leases on": "leases",
    "tollgate, leases off, metrics on": "off+metrics",
    "tollgate, leases on, metrics on": "leases+metrics",
}
WARM = 300

# Run inside the measured process: set up Django, warm the path, then serve
# N requests. Written for this checkout and for the layout before the lean
# round trip (quotas.limiter, RedisBackend._evalsha), so that --root can
# measure an older commit the same way.
_CHILD = r"""
import io, os, sys, time
case, n, key = sys.argv[1].partition("+")[0], int(sys.argv[2]), sys.argv[3]
import django
django.setup()
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.test.utils import override_settings
try:
    from quotas.backends import get_backend
except ImportError:
    from quotas.limiter import get_backend
backend = get_backend()
backend.initialize()
if case == "unmetered":
    with override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != "quotas.middleware.QuotaMiddleware"]):
        handler = WSGIHandler()
else:
    handler = WSGIHandler()
if case == "leases" and not hasattr(backend, "_send"):
    sys.exit(3)  # no leases in this checkout
settings.RATELIMIT_LEASES = case == "leases"
def call():
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/ping", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1:8000", "HTTP_AUTHORIZATION": "Bearer " + key,
               "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr}
    return b"".join(handler(environ, lambda *args: None))
for _ in range(%(warm)d):
    call()
if case == "canned":
    if hasattr(backend, "_send"):
        from quotas import codec
        from quotas.contract import ONE
        from quotas.meter import process_meter
        subject = process_meter().authenticate(key).subject
        command, _ = codec.command(subject, ONE, int(time.time() * 1000), backend._target)
        try:
            reply = backend._send(backend._charge, command, subject.account_id)
            backend._send = lambda script, command, account_id: reply
        except TypeError:  # a checkout whose _send has no account
            reply = backend._send(backend._charge, command)
            backend._send = lambda script, command: reply
    else:
        from quotas import limiter, meter
        subject = meter.authenticate_key(key).subject
        args, _ = limiter.charge_arguments(subject, 1, 1, int(time.time() * 1000))
        reply = backend._evalsha(backend._charge, "tg:{a%%d}" %% subject.account_id, args)
        backend._evalsha = lambda script, account, args: reply
    for _ in range(50):
        call()
for _ in range(n):
    call()
"""


def _instructions(valgrind: str, root: Path, env: dict[str, str], case: str, requests: int, key: str) -> int | None:
    """Instructions (cachegrind's ``I refs``) of one process serving
    ``requests`` requests after the warm-up; None if the case does not run
    in that checkout."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(_CHILD % {"warm": WARM})
    cachegrind = [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    env = {**env, "PYTHONPATH": str(root)}
    if case.endswith("+metrics"):
        metrics = tempfile.mkdtemp(prefix="tollgate-metrics-")
        env.update(METRICS_TOKEN="bench", PROMETHEUS_MULTIPROC_DIR=metrics)
    try:
        result = subprocess.run(
            [*cachegrind, sys.executable, script.name, case, str(requests), key],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        os.unlink(script.name)
        if case.endswith("+metrics"):
            shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    if result.returncode == 3:
        return None
    found = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{case} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (this one)")
    parser.add_argument("--requests", type=int, default=1000, help="requests the second run adds (1000)")
    parser.add_argument("--cases", help="labels of the cases to run, separated by ';' (all)")
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (Debian/Ubuntu: sudo apt-get install valgrind)")
    redis = RedisServer().start()
    try:
        env = base_env(Path(redis.directory))
        key = str(seed_database(env, many=0)["throughput_key"])
        env.update(REDIS_URL=redis.url, DJANGO_SETTINGS_MODULE="bench.ratelimit.settings")
        results: dict[str, int] = {}
        wanted = {label.strip() for label in args.cases.split(";")} if args.cases else set(CASES)
        for label, case in CASES.items():
            if label not in wanted:
                continue
            short = _instructions(valgrind, args.root, env, case, 200, key)
            if short is None:
                continue
            long = _instructions(valgrind, args.root, env, case, 200 + args.requests, key)
            if long is None:
                raise RuntimeError(f"{label} ran once and not twice")
            results[label] = (long - short) // args.requests
            print(f"{label:30s} {results[label]:>9,d} instructions per request", flush=True)
    finally:
        redis.stop()
    base = results.get("unmetered")
    if base is not None:
        for label in ("tollgate, leases off", "tollgate, Redis reply canned", "tollgate, leases on"):
            if label in results:
                print(f"  {label}: {results[label] - base:+,d} over unmetered")
        metering = results.get("tollgate, leases off", base) - base
        for leases in ("off", "on"):
            on, off = results.get(f"tollgate, leases {leases}, metrics on"), results.get(f"tollgate, leases {leases}")
            if on is not None and off is not None and metering > 0:
                print(
                    f"  metrics on, leases {leases}: {on - off:+,d} over metrics off = "
                    f"{(on - off) / metering:.1%} of the metering cost (leases off over unmetered)"
                )
    print(json.dumps({"root": str(args.root), "per_request": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
