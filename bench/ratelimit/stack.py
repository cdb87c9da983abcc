"""The processes a bench run owns: private redis-servers, a throwaway SQLite
database and one real gunicorn per variant.

Nothing here touches a Redis the bench did not start: every server comes from
``tests.redis_server.RedisServer`` (a free loopback port, no persistence).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.ratelimit.plans import MANY_ACCOUNTS, MANY_KEYS
from tests.processes import service_env
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
# Besides tests.processes' own list: variables of the caller's environment
# that would change what is measured.
_SCRUBBED = (
    *("DATABASE_URL", "WEB_CONCURRENCY", "PORT", "GUNICORN_CMD_ARGS", "GUNICORN_ACCESS_LOG", "RATELIMIT_LEASES"),
    *("METRICS_TOKEN", "PROMETHEUS_MULTIPROC_DIR", "LOG_FORMAT", "LOG_REQUESTS", "SENTRY_DSN"),
)
TOLLGATE_SETTINGS = "bench.ratelimit.settings"
UNMETERED_SETTINGS = "bench.ratelimit.settings_unmetered"


@dataclass(frozen=True)
class Variant:
    """One way of serving a ping. ``burst_path`` is where the exactness and
    rejected phases send the burst key (None: the variant limits nothing);
    ``env``: what its gunicorn's environment sets besides; ``root``: the
    checkout it is served from (None: this one)."""

    name: str
    settings: str
    ping_path: str
    burst_path: str | None
    env: tuple[tuple[str, str], ...] = ()
    root: Path | None = None


VARIANTS = (
    Variant("unmetered", UNMETERED_SETTINGS, "/api/v1/ping", None),
    Variant("tollgate", TOLLGATE_SETTINGS, "/api/v1/ping", "/api/v1/ping"),
    Variant("tollgate-no-lease", TOLLGATE_SETTINGS, "/api/v1/ping", "/api/v1/ping", (("RATELIMIT_LEASES", "false"),)),
    # The same as tollgate, with /metrics on: every request recorded in
    # prometheus_client's multiprocess files (a directory of its own).
    Variant("tollgate-metrics", TOLLGATE_SETTINGS, "/api/v1/ping", "/api/v1/ping", (("METRICS_TOKEN", "bench"),)),
    Variant("django-ratelimit", UNMETERED_SETTINGS, "/bench/django-ratelimit/ping", "/bench/django-ratelimit/burst"),
    Variant("limits", UNMETERED_SETTINGS, "/bench/limits/ping", "/bench/limits/burst"),
    Variant("drf", UNMETERED_SETTINGS, "/bench/drf/ping", "/bench/drf/burst"),
)


def before(root: Path) -> Variant:
    """Tollgate as another checkout serves it (``--before``): a worktree of an
    older commit, measured in the same run, on the same database."""
    return Variant("tollgate-before", TOLLGATE_SETTINGS, "/api/v1/ping", "/api/v1/ping", (), root.resolve())


def base_env(directory: Path) -> dict[str, str]:
    """The environment of every process the bench starts: the caller's, less
    what would change the measurement, with a test secret and a SQLite
    database in ``directory``."""
    return service_env(
        scrub=_SCRUBBED,
        SECRET_KEY="bench-only-" + "x" * 50,
        ENVIRONMENT="bench",
        DATABASE_URL=f"sqlite:///{directory / 'bench.sqlite3'}",
        DJANGO_SETTINGS_MODULE=TOLLGATE_SETTINGS,
        PYTHONPATH=str(ROOT),
    )


def seed_database(env: dict[str, str], many: int = MANY_KEYS, accounts: int = MANY_ACCOUNTS) -> dict[str, object]:
    """Migrate and create plans, accounts and keys (see ``seed.py``; ``many``
    keys of ``accounts`` accounts for the many-keys load)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.ratelimit.seed", "--many", str(many), "--accounts", str(accounts)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"seeding the bench database failed:\n{result.stdout}{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@dataclass
class Server:
    """A variant served by its own gunicorn, on its own private Redis."""

    variant: Variant
    redis: RedisServer
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str], workers: int) -> None:
        # gunicorn reads ./gunicorn.conf.py (preload, timeouts, the Redis gate
        # in the master) like the Procfile's web process; bind and worker
        # count are given on the command line, which takes precedence.
        root = self.variant.root or ROOT
        env = {
            **env,
            "DJANGO_SETTINGS_MODULE": self.variant.settings,
            "REDIS_URL": self.redis.url,
            "PYTHONPATH": str(root),
            **dict(self.variant.env),
        }
        if env.get("METRICS_TOKEN"):
            # What project.serve does for the Procfile's web process.
            metrics = self.log_path.parent / f"metrics-{self.variant.name}"
            metrics.mkdir(exist_ok=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "project.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            # gunicorn 27's control socket has one default path per
            # user: five gunicorns (or the test suite's) would share it.
            "--no-control-socket",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gunicorn for {self.variant.name} exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health/live", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn for {self.variant.name} did not answer in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.redis.stop()


class Stack:
    """Everything one run starts; ``close()`` stops all of it."""

    def __init__(self, variants: tuple[Variant, ...], workers: int) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="tollgate-bench-"))
        self.env = base_env(self.directory)
        self.workers = workers
        self.servers: list[Server] = []
        self.keys: dict[str, object] = {}
        self.keys_file = self.directory / "many-keys.txt"
        self._variants = variants

    def open(self) -> None:
        for variant in self._variants:
            redis = RedisServer().start()
            self.servers.append(Server(variant, redis, free_port(), self.directory / f"gunicorn-{variant.name}.log"))
        # The gunicorns boot in parallel, and while they do the database is
        # seeded: nothing reads it before the first request.
        for server in self.servers:
            server.start(self.env, self.workers)
        self.keys = seed_database(self.env)
        self.keys_file.write_text("\n".join(self.many_keys) + "\n")
        for server in self.servers:
            server.wait_ready()

    @property
    def many_keys(self) -> list[str]:
        return [str(key) for key in self.keys["many_keys"]]  # type: ignore[attr-defined]

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
