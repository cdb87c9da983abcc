"""One attempt at sending one delivery: signed, bounded, to a checked address.

- 5 s per step (connect, each read, write): a receiver that hangs costs one
  worker at most that long per step, and the attempt counts as failed.
- A redirect is followed only to the same scheme, host and port (at most 3);
  one to another host is a failed attempt, never a request to it.
- Only a 2xx answer is a success; at most 1 KiB of the answer is read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

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


def _pinned(url: str) -> tuple[str, str, str]:
    """(URL with the checked address in place of the host, Host header, SNI name)."""
    parts = url_check(url)
    address = resolve(parts)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header, host


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def send(*, url: str, secret: str, event: str, event_id: str, body: bytes) -> Outcome:
    """POST ``body`` to ``url``, signed now. Never raises for the receiver's
    faults: they are the outcome."""
    target = url
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                pinned, host_header, sni = _pinned(target)
            except AddressRefused as refused:
                return Outcome(False, error=str(refused))
            headers = {
                "Host": host_header,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Tollgate-Event": event,
                "Tollgate-Event-Id": event_id,
                HEADER: signature(secret=secret, timestamp=int(time.time()), body=body),
            }
            try:
                with client.stream(
                    "POST", pinned, content=body, headers=headers, extensions={"sni_hostname": sni}
                ) as response:
                    for _chunk in response.iter_raw(1024):
                        break
            except httpx.HTTPError as exc:
                return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
            if 200 <= response.status_code < 300:
                return Outcome(True, response.status_code)
            location = response.headers.get("Location")
            if response.status_code in (301, 302, 303, 307, 308) and location:
                following = urljoin(target, location)
                if _origin(following) != _origin(target):
                    return Outcome(False, response.status_code, "Redirected to another host; not followed.")
                target = following
                continue
            return Outcome(False, response.status_code, f"The receiver answered {response.status_code}.")
    return Outcome(False, error=f"More than {MAX_REDIRECTS} redirects.")
