"""A private PostgreSQL cluster for the tests that break the database.

``initdb`` makes a throw-away cluster in a temporary directory and
``postgres`` serves it on a free loopback port (no fsync: nothing here must
survive a crash). The test that owns it may stop it (fast shutdown: clients
are disconnected), start it again with its data, or hang it: SIGSTOP to the
postmaster and to every backend, so that the kernel still accepts and
acknowledges connections and queries that nobody answers. The shared
server on 5432 is never touched.

PostgreSQL refuses to run as root; as root the cluster runs as the
``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.redis_server import free_port, wait_until_up

INSTALL_HINT = (
    "PostgreSQL's server programs (initdb, postgres) are not installed. Install them (Debian/Ubuntu: "
    "`sudo apt-get install postgresql`, macOS: `brew install postgresql@16`); the suite starts its own "
    "private cluster and never uses yours."
)


def _program(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(INSTALL_HINT)
    return found


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (``ps``, as on Linux and macOS)."""
    listing = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], check=True, capture_output=True, text=True).stdout
    pairs = (line.split() for line in listing.splitlines() if line.strip())
    return [int(child) for child, parent in pairs if int(parent) == pid]


class PostgresServer:
    def __init__(self) -> None:
        self.initdb, self.postgres = _program("initdb"), _program("postgres")
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="tollgate-postgres-"))
        self.data = self.directory / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            os.chown(self.directory, pwd.getpwnam(self.user).pw_uid, -1)
        self.process: subprocess.Popen[bytes] | None = None
        self._paused: list[int] = []
        command = [self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
        subprocess.run(command, check=True, capture_output=True, user=self.user)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:  # type: ignore[type-arg]
        return psycopg.connect(self.url(database), connect_timeout=2, autocommit=True)

    def start(self) -> PostgresServer:
        listen = ["-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.directory)]
        durability = ["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
        self.process = subprocess.Popen(
            [self.postgres, "-D", str(self.data), *listen, *durability],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self.user,
            start_new_session=True,
        )
        try:
            probe = lambda: self.connect().close()  # noqa: E731
            wait_until_up(
                probe, self.process, f"postgres on port {self.port}", errors=(psycopg.OperationalError,), timeout=30
            )
        except RuntimeError:
            self.stop()
            raise
        return self

    def create_database(self, name: str) -> str:
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, the data kept."""
        self.resume()
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def pause(self) -> None:
        """Hang the whole server: the postmaster first (so that no backend is
        forked after), then every process it forked, a backend still
        authenticating too."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self._paused = [self.process.pid]
        for pid in _children(self.process.pid):
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:  # a backend that has just exited
                continue
            self._paused.append(pid)

    def resume(self) -> None:
        for pid in self._paused:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                continue
        self._paused = []

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
