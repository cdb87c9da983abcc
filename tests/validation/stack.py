"""The job stack as users run it, for the end-to-end tests and the bench:
a real gunicorn and real ``rqworker`` processes on a private Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.processes import ROOT, database_url, service_env, stop

# Recovery timings for tests: a dead run is noticed after 1.5 s without a
# heartbeat, and every worker sweeps four times a second.
FAST_RECOVERY = {
    "VALIDATION_RECOVERY_INTERVAL": "0.25",
    "VALIDATION_STALE_SECONDS": "1.5",
    "VALIDATION_ENQUEUE_GRACE": "0.5",
    "VALIDATION_PROGRESS_SECONDS": "0.1",
}


def stack_env(django_db_blocker: Any, redis_url: str, media: Path) -> dict[str, str]:
    """The environment of a test module's web and workers: its Redis, the
    test database, its own media directory, the fast recovery timings."""
    with django_db_blocker.unblock():
        url = database_url()
    return service_env(REDIS_URL=redis_url, DATABASE_URL=url, MEDIA_ROOT=str(media), **FAST_RECOVERY)


class Worker:
    """A ``manage.py rqworker webhooks validation`` process (its own session, so that
    it can be killed the way a platform kills a dyno)."""

    def __init__(self, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "rqworker", "webhooks", "validation"],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost host would."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> str:
        stop(self.process)
        text = self.output()
        self.log.close()
        return text


@contextmanager
def worker(env: dict[str, str], cwd: Path = ROOT) -> Iterator[Worker]:
    process = Worker(env, cwd)
    try:
        yield process
    finally:
        text = process.stop()
        print(f"--- rqworker {process.pid} logged:\n{text[-20000:]}")


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


class Client:
    """An API client of one key against a live server."""

    def __init__(self, base: str, key: str) -> None:
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def register(self, name: str, version: str, schema: Any) -> httpx.Response:
        return self.http.post("/api/v1/schemas", json={"name": name, "version": version, "schema": schema})

    def upload(self, content: Any, *, schema: str, content_type: str) -> httpx.Response:
        return self.http.post(f"/api/v1/jobs?schema={schema}", content=content, headers={"Content-Type": content_type})

    def job(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"/api/v1/jobs/{job_id}", params={"include": "errors"}).json()

    def finished(self, job_id: str, *, timeout: float = 60) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_for(done, timeout=timeout, interval=0.1)

    def errors(self, job_id: str) -> list[str]:
        response = self.http.get(f"/api/v1/jobs/{job_id}/errors")
        response.raise_for_status()
        return response.text.splitlines()

    def usage(self) -> dict[str, int]:
        limits = self.http.get("/api/v1/usage").json()["limits"]
        return {limit["name"]: limit["limit"] - limit["remaining"] for limit in limits if limit["kind"] == "quota"}
