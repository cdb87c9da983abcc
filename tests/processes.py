"""Start the service's real processes (manage.py, gunicorn, rqworker) the way
users do, against the suite's private Redis and test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
_SCRUBBED = (
    *(
        "DEMO_MODE",
        "REDIS_URL",
        "DEBUG",
        "RATELIMIT_FAIL_MODE",
        "RATELIMIT_LEASES",
        "HEALTH_TOKEN",
        "DJANGO_SETTINGS_MODULE",
    ),
    *("REDIS_SSL_CERT_REQS", "AWS_STORAGE_BUCKET_NAME", "ADMINS", "MEDIA_ROOT"),
    *("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD", "REDIS_CLUSTER_NODES"),
    *("REDIS_PASSWORD", "REDIS_TLS", "REDIS_DB", "QUEUE_REDIS_URL", "QUEUE_REDIS_SENTINEL_MASTER"),
    *("METRICS_TOKEN", "PROMETHEUS_MULTIPROC_DIR", "LOG_FORMAT", "LOG_REQUESTS", "SENTRY_DSN"),
    *("WORKER_HEARTBEAT_SECONDS", "WORKER_LOST_AFTER"),
)


def database_url() -> str:
    """The URL of the test database pytest-django created (and this process uses)."""
    from django.db import connection

    settings = connection.settings_dict
    if settings["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{settings['NAME']}"
    user = quote(settings.get("USER") or "")
    password = f":{quote(settings['PASSWORD'])}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


def service_env(*, scrub: tuple[str, ...] = (), **overrides: str) -> dict[str, str]:
    """The environment of a service process started by tests and benches: the
    caller's, less the service's own variables (and ``scrub``), with a test
    secret, then ``overrides``."""
    env = {name: value for name, value in os.environ.items() if name not in _SCRUBBED + scrub}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        SECRET_KEY="tests-only-" + "x" * 50,
        ENVIRONMENT="test",
        PYTHONUNBUFFERED="1",
        REDIS_STARTUP_WAIT="1",
    )
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_for_http(url: str, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 15) -> str:
    """Stop ``process`` and return what it printed."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stdout.read() if process.stdout else ""


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` now (children, theirs, ...), read from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # it exited while we looked
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def gunicorn_command(port: int, workers: int) -> list[str]:
    return [
        *(sys.executable, "-m", "project.serve", "--config", str(ROOT / "gunicorn.conf.py")),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
    ]


@contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 2, cwd: Path = ROOT, log_path: Path | None = None) -> Iterator[str]:
    """A real gunicorn (with gunicorn.conf.py) on a free port, run from
    ``cwd``; yields its base URL. What it logged goes to ``log_path`` (for
    the test to read) and is printed when the test fails (pytest shows stdout)."""
    port = free_port()
    if cwd != ROOT:
        env = {**env, "PYTHONPATH": str(ROOT)}
    with open(log_path, "w+") if log_path else tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            gunicorn_command(port, workers), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(f"{base}/health/live", process)
            yield base
        finally:
            stop(process)
            log.seek(0)
            print(f"--- gunicorn on {base} logged:\n{log.read()[-20000:]}")
