"""Does the time of a refused key tell which prefixes exist?

    .venv/bin/python bench/ratelimit/key_timing.py [--requests 1000] [--workers 2] [--settings project]

Starts a private redis-server and one real gunicorn (the bench's Tollgate
settings, whose SQLite connections persist as PostgreSQL's do in production;
``--settings project``: the project's own, which reopen SQLite per request),
with a throwaway SQLite database holding one real key, then sends, one at a
time and interleaved, requests whose key is well formed (the checksum is
right) but refused:

- ``unknown``: a made-up prefix, a new one every request (what an attacker
  probing for prefixes sends);
- ``wrong secret``: the real key's prefix with a wrong secret, a new one every
  request;
- ``unknown, again``: a second, independent sample of the first case, so that
  the difference between two samples of the same thing shows the noise.

Each time is the client's, from writing the request to reading the whole
answer (every one must be 401 ``invalid_api_key``). Prints the medians, the
difference between the two cases with a bootstrap 95 % interval, and the
noise.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ratelimit.stack import TOLLGATE_SETTINGS, base_env, seed_database  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402

CASES = ("unknown", "wrong secret", "unknown, again")


def _key(prefix: str) -> str:
    """A well-formed key for ``prefix`` with a random secret."""
    from quotas.keys import BASE62, SECRET_LENGTH, _checksum

    body = f"tg_{prefix}_{''.join(random.choice(BASE62) for _ in range(SECRET_LENGTH))}"
    return body + _checksum(body)


def _made_up_prefix() -> str:
    from quotas.keys import PREFIX_ALPHABET, PREFIX_LENGTH

    return "".join(random.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))


def _timed(port: int, key: str) -> tuple[float, bytes]:
    request = (
        f"GET /api/v1/ping HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        elapsed = time.perf_counter() - started
    return elapsed, b"".join(chunks)


def _bootstrap(first: list[float], second: list[float], rounds: int = 2000) -> tuple[float, float]:
    rng = random.Random(11)
    differences = sorted(
        statistics.median(rng.choices(first, k=len(first))) - statistics.median(rng.choices(second, k=len(second)))
        for _ in range(rounds)
    )
    return differences[int(rounds * 0.025)], differences[int(rounds * 0.975)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per case (1000)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (2)")
    parser.add_argument(
        "--settings", choices=("bench", "project"), default="bench", help="the Django settings to serve with (bench)"
    )
    args = parser.parse_args(argv)
    settings_module = TOLLGATE_SETTINGS if args.settings == "bench" else "project.settings"

    redis = RedisServer().start()
    directory = Path(tempfile.mkdtemp(prefix="tollgate-key-timing-"))
    env = {**base_env(directory), "REDIS_URL": redis.url}
    port = free_port()
    process = None
    try:
        real = str(seed_database(env, many=0)["throughput_key"])
        prefix = real.split("_")[1]
        command = [sys.executable, "-m", "gunicorn", "project.wsgi", "--bind", f"127.0.0.1:{port}"]
        command += ["--workers", str(args.workers), "--no-control-socket"]
        with (directory / "gunicorn.log").open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**env, "DJANGO_SETTINGS_MODULE": settings_module},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                _timed(port, real)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.1)
        makers = {
            "unknown": lambda: _key(_made_up_prefix()),
            "wrong secret": lambda: _key(prefix),
            "unknown, again": lambda: _key(_made_up_prefix()),
        }
        for _ in range(100):  # warm every path
            for make in makers.values():
                _timed(port, make())
        times: dict[str, list[float]] = {case: [] for case in CASES}
        for _ in range(args.requests):
            for case in random.sample(CASES, len(CASES)):
                elapsed, answer = _timed(port, makers[case]())
                if b" 401 " not in answer.split(b"\r\n", 1)[0] or b"invalid_api_key" not in answer:
                    raise RuntimeError(f"{case}: expected 401 invalid_api_key, got {answer[:120]!r}")
                times[case].append(elapsed * 1000)
    finally:
        if process is not None:
            process.terminate()
            process.wait(15)
        redis.stop()

    medians = {case: statistics.median(values) for case, values in times.items()}
    print(f"Refused keys, {args.requests} requests per case, interleaved in random order, one at a time, through")
    print(
        f"gunicorn ({args.workers} sync workers, {settings_module}) with a private Redis and SQLite; "
        "client time per request:"
    )
    for case in CASES:
        values = sorted(times[case])
        p10, p90 = values[len(values) // 10], values[len(values) * 9 // 10]
        print(f"  {case:16s} median {medians[case]:.3f} ms   (p10 {p10:.3f}, p90 {p90:.3f})")
    low, high = _bootstrap(times["unknown"], times["wrong secret"])
    noise_low, noise_high = _bootstrap(times["unknown"], times["unknown, again"])
    difference = medians["unknown"] - medians["wrong secret"]
    noise = medians["unknown"] - medians["unknown, again"]
    print(f"  unknown - wrong secret:    {difference:+.3f} ms (95 % interval {low:+.3f} to {high:+.3f})")
    print(
        f"  unknown - unknown, again:  {noise:+.3f} ms (95 % interval {noise_low:+.3f} to {noise_high:+.3f}): the noise"
    )
    equal = low <= 0 <= high or abs(difference) <= max(abs(noise_low), abs(noise_high))
    print(f"  the same within noise: {'yes' if equal else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
