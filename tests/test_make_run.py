"""`make run` as a new user runs it, in a fresh copy of the project.

The copy holds the files git tracks, as they are in this working tree (what a
clone of the commit being tested holds, uncommitted edits included): no
virtualenv, no `.run/`, no database. `make run` installs the runtime
requirements there (from pip's usual sources), then runs
against a ``REDIS_URL`` on a free loopback port where nothing listens, so it
starts its own redis-server. Every process a run starts is found from /proc
and killed at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, alive, descendants
from tests.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.make_run]

# What a user's shell would not have: the suite's own settings, and the make
# and virtualenv state of the `make test` running this test.
_NOT_A_USERS = ("DEMO_MODE", "REDIS_URL", "SECRET_KEY", "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "ENVIRONMENT")
_NOT_A_USERS += ("DEBUG", "HEALTH_TOKEN", "RATELIMIT_FAIL_MODE", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "VIRTUAL_ENV")
FIRST_RUN_WAIT = 420  # the first run installs the runtime requirements
RUN_WAIT = 120


class MakeRun:
    """`make run` (or another command) in its own process group, its output
    gathered by a thread, every process below it remembered as it appears."""

    def __init__(self, project: Path, env: dict[str, str], command: tuple[str, ...]) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.seen: set[int] = set()
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def line_with(self, text: str, timeout: float) -> str:
        """The first output line holding ``text``, once it is printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.seen |= descendants(self.process.pid)
            for line in list(self.lines):
                if text in line:
                    return line
            if self.process.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"exited with {self.process.returncode} before printing {text!r}:\n{self.output}")
            time.sleep(0.2)
        pytest.fail(f"{text!r} not printed within {timeout} s:\n{self.output}")

    def finish(self, timeout: float = 60) -> int:
        """Wait for the command to end by itself; returns its status."""
        try:
            return self.process.wait(timeout)
        finally:
            self._reader.join(5)

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the process group, as a terminal sends it."""
        self.seen |= descendants(self.process.pid)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        self.finish()

    def kill_everything(self) -> None:
        self.seen |= descendants(self.process.pid) if self.process.poll() is None else set()
        for pid in [self.process.pid, *self.seen]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait()


@contextmanager
def started(project: Path, env: dict[str, str], *command: str) -> Iterator[MakeRun]:
    run = MakeRun(project, env, command or ("make", "run"))
    try:
        yield run
    finally:
        run.kill_everything()
        print(f"--- {' '.join(command or ('make', 'run'))} printed:\n{run.output[-20000:]}")


def user_env(**overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _NOT_A_USERS}
    env.update(PORT=str(free_port()), REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("make-run") / "tollgate"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # deleted in the working tree: not in the copy either
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).write_bytes(source.read_bytes())
            (copy / name).chmod(source.stat().st_mode)
    return copy


def curl(line: str) -> httpx.Response:
    """What the printed curl line answers, asked with the same header and URL."""
    words = shlex.split(line)
    assert words[:3] == ["curl", "-i", "-H"], line
    name, _, value = words[3].partition(": ")
    return httpx.get(words[4], headers={name: value}, timeout=10)


def daily_remaining(key: str, base: str) -> int:
    usage = httpx.get(f"{base}/api/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert usage.status_code == 200, usage.text
    return next(limit["remaining"] for limit in usage.json()["limits"] if limit["name"] == "daily-quota")


def demo_keys(project: Path) -> list[tuple[str, str | None]]:
    """``(prefix, revoked_at)`` of every key of the demo account."""
    if not (project / "db.sqlite3").exists():
        return []
    with sqlite3.connect(project / "db.sqlite3") as db:
        return db.execute(
            "SELECT k.prefix, k.revoked_at FROM quotas_apikey k JOIN quotas_account a ON k.account_id = a.id "
            "WHERE a.name = 'demo' ORDER BY k.id"
        ).fetchall()


def answers(url: str) -> bool:
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def readme_manage_commands() -> list[str]:
    """The `bin/manage` lines of the README's sh blocks, continuations joined
    and comments dropped."""
    commands, inside, pending = [], False, ""
    for line in (ROOT / "README.md").read_text().splitlines():
        line = line.strip()
        if line.startswith("```"):
            inside = line == "```sh" and not inside
            continue
        if not inside:
            continue
        text = pending + line.split("#")[0].strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if text.startswith("bin/manage "):
            commands.append(text)
    return commands


@pytest.mark.timeout(FIRST_RUN_WAIT + 300)
def test_make_run_starts_redis_keeps_its_counters_and_one_demo_key(project: Path) -> None:
    env = user_env()
    with started(project, env) as first:
        line = first.line_with("curl -i", FIRST_RUN_WAIT)
        assert "private redis-server" in first.output
        response = curl(line)
        assert response.status_code == 200, response.text
        assert response.json() == {"pong": True}
        key = shlex.split(line)[3].removeprefix("Authorization: Bearer ")
        base = shlex.split(line)[4].removesuffix("/api/v1/ping")
        assert base == f"http://127.0.0.1:{env['PORT']}"
        assert curl(line).status_code == 200
        used = daily_remaining(key, base)
        assert used == 10000 - 2
        first.interrupt()
        assert [pid for pid in first.seen if alive(pid)] == [], "Ctrl-C left processes running"
    assert not answers(env["REDIS_URL"]), "the private redis-server outlived Ctrl-C"
    assert (project / ".run" / "redis" / "appendonlydir").is_dir()
    for kept in (".run/env", ".run/demo_key"):
        assert (project / kept).stat().st_mode & 0o777 == 0o600, kept

    with started(project, env) as second:
        line = second.line_with("curl -i", RUN_WAIT)
        assert shlex.split(line)[3] == f"Authorization: Bearer {key}"  # the same demo key
        assert daily_remaining(key, base) == used  # the counters survived the restart
        assert curl(line).status_code == 200

        # Every manage.py command the README prints works as printed.
        prefix = ""
        for command in readme_manage_commands():
            command = command.replace("3k9x2m1p", prefix) if "revoke_api_key" in command else command
            result = subprocess.run(
                ["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, (command, result.stderr)
            if "--json" in command:
                prefix = json.loads(result.stdout)["prefix"]
        assert prefix, "the README's create_api_key --json line was not found"
        superuser = ["bin/manage", "createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com"]
        created = subprocess.run(superuser, cwd=project, env=env, capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        second.interrupt()
    usable = [prefix for prefix, revoked_at in demo_keys(project) if revoked_at is None]
    assert usable == [key.split("_")[1]]


def test_an_answering_redis_url_is_used_as_it_is(project: Path, redis_server: RedisServer) -> None:
    env = user_env(REDIS_URL=redis_server.url)
    with started(project, env) as run:
        assert curl(run.line_with("curl -i", RUN_WAIT)).status_code == 200
        assert f"using the Redis at {redis_server.url}" in run.output
        assert "private redis-server" not in run.output
        run.interrupt()
    assert redis_server.client().ping()  # not ours to stop


def test_demo_mode_needs_no_redis(project: Path) -> None:
    env = user_env(DEMO_MODE="true")
    del env["REDIS_URL"]
    with started(project, env) as run:
        line = run.line_with("curl -i", RUN_WAIT)
        assert curl(line).status_code == 200
        base = shlex.split(line)[4].removesuffix("/api/v1/ping")
        assert httpx.get(f"{base}/health", timeout=10).json()["redis"]["backend"] == "memory"
        assert "redis-server" not in run.output
        run.interrupt()


def test_a_busy_port_stops_before_anything_is_created(project: Path) -> None:
    before = demo_keys(project)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = user_env(PORT=str(busy.getsockname()[1]))
        with started(project, env) as run:
            assert run.finish(RUN_WAIT) != 0
            assert f"port {env['PORT']} on 127.0.0.1 is in use" in run.output
            assert "PORT=" in run.output
    assert not answers(env["REDIS_URL"])
    assert demo_keys(project) == before


def test_a_silent_redis_elsewhere_is_not_started_and_nothing_is_created(project: Path) -> None:
    before = demo_keys(project)
    with started(project, user_env(REDIS_URL="redis://redis.invalid:6379/0")) as run:
        assert run.finish(RUN_WAIT) != 0
        assert "nothing answers at REDIS_URL=redis://redis.invalid:6379/0" in run.output
        assert "only for a redis:// URL on a loopback address" in run.output
        assert "private redis-server" not in run.output
    assert demo_keys(project) == before


def test_without_redis_server_it_says_so_and_names_demo_mode(project: Path, tmp_path: Path) -> None:
    """No redis-server and no apt-get on PATH: nothing can install it."""
    (tmp_path / "bash").symlink_to(subprocess.run(["which", "bash"], capture_output=True, text=True).stdout.strip())
    env = user_env(PATH=str(tmp_path))
    python = project / ".venv" / "bin" / "python"
    if not python.exists():  # run alone, without the first test of the module
        subprocess.run(["make", ".venv/bin/.runtime-installed"], cwd=project, env=user_env(), check=True)
    before = demo_keys(project)
    with started(project, env, str(python), "bin/run") as run:
        assert run.finish(RUN_WAIT) == 1
        assert "redis-server: Debian/Ubuntu `sudo apt-get install redis-server`" in run.output
        assert "DEMO_MODE=true make run" in run.output
    assert demo_keys(project) == before
