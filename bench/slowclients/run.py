"""Slow clients against gunicorn's sync workers: direct, and behind nginx.

    .venv/bin/python bench/slowclients/run.py [--slow 30] [--seconds 20]

Starts the web process as the Procfile does (``python -m project.serve``,
gunicorn.conf.py: 2 sync workers), in DEMO_MODE so that nothing else is
needed, then opens ``--slow`` connections that send their request headers one
byte a second (a slow mobile client, or a slowloris), while one normal client
asks ``/health/live`` five times a second with a 2 s timeout. The same again
with nginx (``nginx`` on PATH: ``apt-get install nginx-light``) in front,
buffering requests as its defaults do. Prints, for each, the share of normal
requests answered and their latency, and the ratio between the two.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.processes import service_env, stop, wait_for_http  # noqa: E402
from tests.redis_server import free_port  # noqa: E402

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://127.0.0.1:{upstream}; proxy_set_header Host $host; }}
    }}
}}
"""


def slow_client(port: int, until: float) -> None:
    """Headers one byte a second until ``until``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while time.monotonic() < until:
                sock.sendall(b"X")
                time.sleep(1)
    except OSError:
        return


def measure(port: int, slow: int, seconds: float) -> dict[str, float]:
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=slow_client, args=(port, until), daemon=True) for _ in range(slow)]
    for thread in threads:
        thread.start()
    time.sleep(1)  # let them take the workers
    latencies, failures = [], 0
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                http.get(f"http://127.0.0.1:{port}/health/live").raise_for_status()
                latencies.append(time.monotonic() - started)
            except httpx.HTTPError:
                failures += 1
            time.sleep(0.2)
    total = len(latencies) + failures
    return {
        "answered": len(latencies) / total if total else 0.0,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "max_ms": 1000 * max(latencies) if latencies else float("nan"),
        "requests": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slow", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise SystemExit("nginx is not installed (Debian/Ubuntu: apt-get install nginx-light)")
    port = free_port()
    env = service_env(DEMO_MODE="true", PORT=str(port))
    web = subprocess.Popen(
        [sys.executable, "-m", "project.serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    directory = Path(tempfile.mkdtemp(prefix="tollgate-nginx-"))
    directory.chmod(0o777)
    front = free_port()
    (directory / "nginx.conf").write_text(NGINX_CONF.format(dir=directory, port=front, upstream=port))
    proxy = subprocess.Popen(
        [nginx, "-c", str(directory / "nginx.conf"), "-p", str(directory)], stderr=subprocess.DEVNULL
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health/live", web)
        wait_for_http(f"http://127.0.0.1:{front}/health/live", proxy)  # type: ignore[arg-type]
        direct = measure(port, args.slow, args.seconds)
        time.sleep(30)  # the workers that gunicorn killed come back
        proxied = measure(front, args.slow, args.seconds)
    finally:
        stop(proxy)  # type: ignore[arg-type]
        stop(web)  # type: ignore[arg-type]
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"{args.slow} slow clients for {args.seconds:.0f} s; a normal client asks /health/live every 0.2 s (2 s timeout)"
    )
    for name, figures in (("gunicorn sync, direct", direct), ("behind nginx (buffering)", proxied)):
        print(
            f"  {name:26} answered {figures['answered']:6.1%} of {figures['requests']:.0f}"
            f"  p50 {figures['p50_ms']:7.1f} ms  max {figures['max_ms']:7.1f} ms"
        )
    if direct["answered"]:
        print(f"  answered ratio (nginx / direct): {proxied['answered'] / direct['answered']:.1f}x")


if __name__ == "__main__":
    main()
