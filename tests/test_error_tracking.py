"""Optional Sentry (``SENTRY_DSN``): events reach the DSN's server with the
logs' redaction applied, and nothing is initialised without it. The process
under test is a real ``manage.py shell`` sending to a local HTTP server that
speaks just enough of Sentry's envelope endpoint."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from project.error_tracking import redact_event
from tests.processes import manage, service_env

PASSWORD = "sentry-test-redis-pw-9931"

SCRIPT = f"""
import logging, sentry_sdk
logging.getLogger("tollgate.test").error("cannot reach redis://:{PASSWORD}@10.1.2.3:6379/0")
try:
    raise RuntimeError("refused, password {PASSWORD}")
except RuntimeError:
    sentry_sdk.capture_exception()
print("initialised:", sentry_sdk.get_client().is_active())
sentry_sdk.flush(5)
"""


class _Inbox(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli  # only sent when sentry-sdk found brotli installed

            body = brotli.decompress(body)
        self.bodies.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def inbox() -> Iterator[tuple[str, list[bytes]]]:
    _Inbox.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Inbox)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://publickey@127.0.0.1:{server.server_address[1]}/1", _Inbox.bodies
    server.shutdown()


def test_events_are_sent_redacted(inbox: tuple[str, list[bytes]]) -> None:
    dsn, bodies = inbox
    env = service_env(SENTRY_DSN=dsn, REDIS_URL=f"redis://:{PASSWORD}@10.1.2.3:6379/0", DEMO_MODE="true")
    result = manage("shell", "-c", SCRIPT, env=env)
    assert result.returncode == 0, result.stderr
    assert "initialised: True" in result.stdout
    sent = b"\n".join(bodies)
    assert b"RuntimeError" in sent and b"cannot reach redis://:***@10.1.2.3" in sent
    assert PASSWORD.encode() not in sent


def test_without_a_dsn_nothing_is_initialised() -> None:
    result = manage("shell", "-c", SCRIPT, env=service_env(DEMO_MODE="true"))
    assert result.returncode == 0, result.stderr
    assert "initialised: False" in result.stdout


def test_credential_headers_are_never_sent() -> None:
    event = {"request": {"headers": {"Authorization": "Bearer tg_abc", "X-Api-Key": "tg_def", "Accept": "*/*"}}}
    assert redact_event(event)["request"]["headers"] == {
        "Authorization": "[Filtered]",
        "X-Api-Key": "[Filtered]",
        "Accept": "*/*",
    }
