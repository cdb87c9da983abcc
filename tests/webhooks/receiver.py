"""A webhook receiver on a loopback port, run by the test itself, and an
independent check of ``Tollgate-Signature`` (written from the documented
format, not from ``webhooks.signing``)."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    # What the next requests get: a status, or ("redirect", location), or
    # ("sleep", seconds); the last one repeats.
    script: list[Any] = field(default_factory=lambda: [200])
    received: list[Received] = field(default_factory=list)

    def wait(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} of {count} deliveries arrived")
            time.sleep(0.05)
        return self.received


@contextmanager
def receiver(script: list[Any] | None = None) -> Iterator[Receiver]:
    state = Receiver(url="", script=list(script or [200]))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                action = state.script.pop(0) if len(state.script) > 1 else state.script[0]
            if isinstance(action, tuple) and action[0] == "trickle":
                # A status line a byte at a time: each read gets something.
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(action[1])
                self.close_connection = True
                return
            if isinstance(action, tuple) and action[0] == "sleep":
                time.sleep(action[1])
                action = 200
            if isinstance(action, tuple) and action[0] == "redirect":
                self.send_response(307)
                self.send_header("Location", action[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(int(action))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def signature_valid(header: str, body: bytes, secret: str, *, tolerance: float = 300) -> bool:
    """What a receiver does: parse ``t=...,v1=...``, recompute the HMAC of
    ``<t>.<body>``, compare in constant time, refuse an old ``t``."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = fields["t"]
    expected = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(timestamp)) <= tolerance
