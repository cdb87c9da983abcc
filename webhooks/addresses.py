"""Where a webhook may go: public addresses only, unless
``WEBHOOKS_ALLOW_PRIVATE`` (tests, ``make run``).

A client chooses the URL, and the worker that calls it sits inside our
network: without this, an endpoint at ``http://10.0.0.5/`` or
``http://169.254.169.254/`` (cloud metadata) would make Tollgate request our
own services. The host is resolved once per attempt and the connection goes
to the address that was checked (no second lookup that DNS rebinding could
answer differently).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from django.conf import settings


class AddressRefused(Exception):
    """The URL may not be called; the message says why (safe to show)."""


def allow_private() -> bool:
    return bool(getattr(settings, "WEBHOOKS_ALLOW_PRIVATE", False))


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def url_check(url: str) -> SplitResult:
    """The parts of an acceptable webhook URL: http or https, a host, no
    credentials; a literal address or ``localhost`` must be public unless
    private ones are allowed. Raises AddressRefused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused("The URL must be http:// or https:// with a host.")
    if parts.username or parts.password:
        raise AddressRefused("The URL must not carry credentials.")
    try:
        parts.port  # noqa: B018  (raises for a port out of range)
    except ValueError:
        raise AddressRefused("The URL's port is not valid.") from None
    if allow_private():
        return parts
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        raise AddressRefused("The URL points at this host.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return parts
    if not is_public(str(literal)):
        raise AddressRefused("The URL points at a private, loopback or reserved address.")
    return parts


def resolve(parts: SplitResult) -> str:
    """One address to connect to for ``parts`` (checked); raises
    AddressRefused when the name does not resolve or every address is
    private (any private address refuses it: a name that mixes them is
    not trusted)."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"The host does not resolve ({exc}).") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise AddressRefused("The host does not resolve.")
    if not allow_private() and not all(is_public(address) for address in addresses):
        raise AddressRefused("The host resolves to a private, loopback or reserved address.")
    return addresses[0]
