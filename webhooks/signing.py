"""``Tollgate-Signature``: how a receiver knows a delivery is ours.

    Tollgate-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

``v1`` is the hex HMAC-SHA256, keyed with the endpoint's secret, of
``"<t>.<body>"`` (the Unix time, a dot and the raw request body). A receiver
recomputes it, compares in constant time, and refuses a ``t`` too far from
its clock (replays); ``Tollgate-Event-Id`` names the event for dropping
duplicates (delivery is at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = "Tollgate-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix, not a secret)


def secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The value of ``Tollgate-Signature`` for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"
