"""One attempt at sending one delivery: signed, bounded, to a checked address.

- 5 s for the whole attempt, redirects included: every connect, write and
  read is given what is left of it, so a receiver that accepts and then
  trickles its answer a byte at a time costs a worker at most 5 s.
- A redirect is followed only to the same scheme, host and port (at most 3);
  one to another host is a failed attempt, never a request to it.
- Only a 2xx answer is a success; of the answer's body, one read at most.

Built on httpcore (httpx's transport) for its pluggable network backend,
which is where the deadline is kept.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpcore

from webhooks.addresses import AddressRefused, resolve, url_check
from webhooks.signing import HEADER, signature

TIMEOUT_SECONDS = 5.0
MAX_REDIRECTS = 3
USER_AGENT = "Tollgate-Webhooks/1"


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    status: int | None = None
    error: str = ""


class _Deadline:
    """What is left of the attempt, for each network step."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self, timeout: float | None, error: type[Exception]) -> float:
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise error(f"the attempt's {TIMEOUT_SECONDS:g} s ran out")
        return remaining if timeout is None else min(timeout, remaining)


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self.stream, self.deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self.deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self.deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = self.deadline.left(timeout, httpcore.ConnectTimeout)
        return _Stream(self.stream.start_tls(ssl_context, server_hostname, left), self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, deadline: _Deadline) -> None:
        self.backend, self.deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        left = self.deadline.left(timeout, httpcore.ConnectTimeout)
        return _Stream(self.backend.connect_tcp(host, port, left, local_address, socket_options), self.deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise httpcore.ConnectError("webhooks go over TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _pinned(url: str) -> tuple[str, str, str]:
    """(URL with the checked address in place of the host, Host header, SNI name)."""
    parts = url_check(url)
    address = resolve(parts)
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return (
        urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        parts.netloc.rpartition("@")[2],
        parts.hostname or "",
    )


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def send(*, url: str, secret: str, event: str, event_id: str, body: bytes) -> Outcome:
    """POST ``body`` to ``url``, signed now. Never raises for the receiver's
    faults: they are the outcome."""
    deadline = _Deadline(TIMEOUT_SECONDS)
    timeouts = {"connect": TIMEOUT_SECONDS, "read": TIMEOUT_SECONDS, "write": TIMEOUT_SECONDS, "pool": TIMEOUT_SECONDS}
    target = url
    with httpcore.ConnectionPool(network_backend=_Backend(deadline), retries=0, max_connections=1) as pool:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                pinned, host_header, sni = _pinned(target)
            except AddressRefused as refused:
                return Outcome(False, error=str(refused))
            headers = [
                (b"Host", host_header.encode("idna")),
                (b"Content-Type", b"application/json"),
                (b"Content-Length", str(len(body)).encode()),
                (b"User-Agent", USER_AGENT.encode()),
                (b"Tollgate-Event", event.encode()),
                (b"Tollgate-Event-Id", event_id.encode()),
                (HEADER.encode(), signature(secret=secret, timestamp=int(time.time()), body=body).encode()),
            ]
            try:
                with pool.stream(
                    "POST", pinned, headers=headers, content=body, extensions={"timeout": timeouts, "sni_hostname": sni}
                ) as response:
                    for _chunk in response.iter_stream():
                        break  # at most one read of the answer
                    status = response.status
                    location = dict((k.lower(), v) for k, v in response.headers).get(b"location", b"").decode("latin-1")
            except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
                return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
            if 200 <= status < 300:
                return Outcome(True, status)
            if status in (301, 302, 303, 307, 308) and location:
                following = urljoin(target, location)
                if _origin(following) != _origin(target):
                    return Outcome(False, status, "Redirected to another host; not followed.")
                target = following
                continue
            return Outcome(False, status, f"The receiver answered {status}.")
    return Outcome(False, error=f"More than {MAX_REDIRECTS} redirects.")
