"""The processes one bench run owns: a private redis-server, a throwaway
SQLite database, media directory, a real gunicorn and a real rqworker.

Nothing here touches a Redis it did not start (``tests.redis_server``: a free
loopback port, nothing kept on disk). Everything is stopped on exit, also on
failure or Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.processes import service_env
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
# Besides tests.processes' own list: what would change what is measured.
_SCRUBBED = ("DATABASE_URL", "WEB_CONCURRENCY", "PORT", "GUNICORN_CMD_ARGS", "MEDIA_ROOT")


class Stack:
    """``overrides`` are added to every process's environment; ``worker=False``
    starts no rqworker (the caller starts its own, e.g. ``rqworker --burst``);
    ``root`` is the checkout whose Tollgate runs (this one by default)."""

    def __init__(self, directory: Path, *, worker: bool = True, root: Path = ROOT, **overrides: str) -> None:
        self.directory = directory
        self.root = root
        self.overrides = overrides
        self.with_worker = worker
        self.redis = RedisServer()
        self.processes: list[subprocess.Popen[str]] = []
        self.logs: list[tempfile._TemporaryFileWrapper[str]] = []
        self.base = ""
        self.key = ""
        self.worker: subprocess.Popen[str] | None = None

    def env(self) -> dict[str, str]:
        return service_env(
            scrub=_SCRUBBED,
            SECRET_KEY="bench-only-" + "x" * 50,
            ENVIRONMENT="bench",
            REDIS_URL=self.redis.url,
            DATABASE_URL=f"sqlite:///{self.directory / 'bench.sqlite3'}",
            MEDIA_ROOT=str(self.directory / "media"),
            **self.overrides,
        )

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def spawn(self, command: list[str], **overrides: str) -> subprocess.Popen[str]:
        log = tempfile.TemporaryFile("w+")
        env = {**self.env(), **overrides}
        process = subprocess.Popen(command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        self.logs.append(log)
        return process

    def __enter__(self) -> Stack:
        self.redis.start()
        try:
            self.manage("migrate", "--noinput", "-v", "0")
            self.manage("set_plan", "bench", "--no-rate", "--quota", "1000000000/day", "--max-upload-mb", "2048")
            self.manage("create_account", "bench", "--plan", "bench")
            self.key = self.manage("create_api_key", "bench").strip().splitlines()[-1]
            self.base = self.web()
            if self.with_worker:
                self.worker = self.spawn([sys.executable, "manage.py", "rqworker", "validation"])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def web(self, **overrides: str) -> str:
        """Start a gunicorn (2 workers) with ``overrides``; its base URL once it answers."""
        port = free_port()
        command = [sys.executable, "-m", "gunicorn", "project.wsgi", "--bind", f"127.0.0.1:{port}"]
        web = self.spawn([*command, "--workers", "2", "--timeout", "600"], **overrides)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health/live", timeout=1)
                return base
            except httpx.HTTPError:
                if web.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start:\n{self.read_log(len(self.logs) - 1)}") from None
                time.sleep(0.1)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.redis.stop()

    def read_log(self, index: int) -> str:
        self.logs[index].seek(0)
        return self.logs[index].read()

    def worker_log(self) -> str:
        return self.read_log(1)

    def horse_pid(self) -> int | None:
        """The rqworker's forked work horse, if one is running."""
        if self.worker is None:
            return None
        for task in Path(f"/proc/{self.worker.pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            if children:
                return int(children[0])
        return None

    @classmethod
    def tree_cpu_seconds(cls, pid: int) -> tuple[float, float]:
        """(user, system) CPU seconds of ``pid`` and its children now (the
        work horse and the guard's child that validates for it)."""
        user, system = cls.cpu_seconds(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                child_user, child_system = cls.cpu_seconds(int(child))
                user, system = user + child_user, system + child_system
        return user, system

    @staticmethod
    def cpu_seconds(pid: int) -> tuple[float, float]:
        """(user, system) CPU seconds of ``pid`` so far; zeros once it has exited."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0, 0.0
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    @staticmethod
    def peak_kb(pid: int) -> int:
        """VmHWM (peak resident set) of ``pid`` in kB; 0 once it has exited."""
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            return 0
        return 0
