"""Private redis-server processes for the suite.

Each server listens on a free loopback port, keeps nothing on disk and belongs
to the test that started it, which may kill, pause (SIGSTOP) and restart it.
The shared Redis on 6379 is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

INSTALL_HINT = (
    "redis-server is not installed. `make test` installs it where it can (bin/system-deps), or says how "
    "(Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`); the suite starts its "
    "own private servers and never uses yours."
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(
    probe: Callable[[], object],
    process: subprocess.Popen[bytes],
    what: str,
    *,
    errors: tuple[type[Exception], ...],
    timeout: float = 10,
) -> None:
    """Call ``probe`` until it stops raising ``errors``; RuntimeError naming
    ``what`` if ``process`` exits or ``timeout`` passes first (the caller
    stops it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except errors:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.02)


class ServerProcess:
    """A server in one process of this test's, which it may kill or pause."""

    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


class RedisServer(ServerProcess):
    def __init__(
        self, *, password: str | None = None, tls: bool = False, port: int | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        """``extra``: more redis-server arguments (a replica's, a Cluster node's)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.binary = binary
        self.port = free_port() if port is None else port
        self.extra = extra
        self.password = password
        self.tls = tls
        self.directory = Path(tempfile.mkdtemp(prefix="tollgate-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        if tls:
            self._make_certificate()

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate (also its own CA), with TLS."""
        return self.directory / "cert.pem"

    def _make_certificate(self) -> None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                str(self.directory / "key.pem"),
                "-out",
                str(self.certificate),
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        tls = {"ssl": True, "ssl_ca_certs": str(self.certificate)} if self.tls else {}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=2, **tls)

    def start(self) -> RedisServer:
        listen = ["--port", str(self.port)]
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            listen += ["--tls-cert-file", str(self.certificate), "--tls-key-file", str(self.directory / "key.pem")]
        args = [self.binary, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.directory), "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        args += self.extra
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_up(
                self.client().ping, self.process, f"redis-server on port {self.port}", errors=(redis.RedisError,)
            )
        except RuntimeError:
            self.kill()
            raise
        return self

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
