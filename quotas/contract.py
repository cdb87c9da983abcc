"""The charge contract shared by both counter backends.

Every metered request is one call of ``lua/charge.lua`` (Redis) or of the
same logic in ``quotas.evaluation`` (memory, DEMO_MODE): all rate limits of
the key and all quotas of its account are checked and committed together, or
nothing is. A rejected request consumes nothing.

- :class:`Subject`: who is charged and under which limits;
- :class:`Charge`: what one call asks: its cost, optionally a lease of more
  requests and units for the calling process, and a give-back of what an
  earlier lease did not use (``quotas.leases`` explains both);
- :class:`ChargeReply`: what the logic answers, the state after the decision;
- :class:`Backend`: what a counter backend offers. ``charge`` returns a
  :class:`quotas.decision.Decision` built from the reply.

Failures are not handled here: a Redis that is down or hung raises redis-py's
``ConnectionError``/``TimeoutError`` after the short timeouts of
``project.redis``, and ``quotas.outage`` applies ``RATELIMIT_FAIL_MODE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from quotas.policy import Quota, RateLimit

if TYPE_CHECKING:
    from quotas.decision import Decision
    from quotas.ledger import Batch
    from quotas.traffic import Traffic

# One hash per account; it lives 64 days past its last write, longer than any
# window (a month) so that a quiet account never loses this month's count.
HASH_TTL_MS = 64 * 86_400_000
# A lease is granted only while, afterwards, every rate limit keeps at least
# this many times the requests the call reserves (its own and the leased ones)
# and every quota this many times its units: near a limit every request is
# charged on its own, exactly, and a small limit (under 128) never leases.
LEASE_MARGIN = 64
QUOTA_FIELDS = {"day": "qd", "month": "qm"}
# The account's usage not yet in the ledger is in the hash named like the
# account's plus this (same Cluster slot); quotas.ledger drains it.
USAGE_SUFFIX = ":u"
# The field of the account's hash that holds when the hash was created (ms).
CREATED_FIELD = "c"
DAY_MS = 86_400_000


def rate_field(key_id: int, rate: RateLimit) -> str:
    """The hash field holding a key's GCRA state for ``rate``."""
    return f"r{key_id}:{rate.count}/{rate.period_ms}"


def parse_quota_field(raw: bytes | str | None, window_id: int) -> int:
    """Units used in window ``window_id`` from a stored quota field
    ("<window id>:<used>")."""
    if not raw:
        return 0
    stored, _, used = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
    return int(used) if stored == str(window_id) else 0


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is charged and under which limits: an API key of an account, as
    loaded from the database together with the account's ``generation``.
    ``memo`` holds what the backends derive from it once (encoded arguments,
    header text); it is never compared."""

    account_id: int
    key_id: int
    generation: str
    rates: tuple[RateLimit, ...]
    quotas: tuple[Quota, ...]
    memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class GiveBack:
    """Requests and units an ended lease did not use, with what the lease was
    granted in: when (``taken_ms``), the run id of each rate limit (in the
    subject's order) and the id of each quota window."""

    requests: int
    units: int
    taken_ms: int
    runs: tuple[int, ...]
    windows: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Charge:
    """One call: ``requests`` against every rate limit and ``units`` against
    every quota; a lease of ``lease_requests`` and ``lease_units`` more,
    served by the caller until ``lease_expires_ms`` (granted only far from
    every limit, else the call is charged alone); and a give-back."""

    requests: int = 1
    units: int = 1
    lease_requests: int = 0
    lease_units: int = 0
    lease_expires_ms: int = 0
    give_back: GiveBack | None = None

    @property
    def leasing(self) -> bool:
        return self.lease_requests > 0 or self.lease_units > 0


# The charge of a plain metered request, and a peek (nothing consumed).
ONE = Charge()
PEEK = Charge(0, 0)


class ChargeReply(NamedTuple):
    """The state after a decision. Per limit (rate limits, then quotas, in
    the subject's order): ``shown`` holds what is left and the seconds until
    it is whole again, rounded up (``(left1, seconds1, left2, ...)``, as the
    ``RateLimit`` header shows them), ``reset_ms`` the same in ms. Per rate
    limit, ``runs`` is the run id a lease gives back to (0: none); per quota,
    ``used`` the units used in the current window. ``violated`` is the
    1-based index of the limit that waits longest, 0 when admitted;
    ``retry_ms`` how long it waits; ``tightest`` the 1-based index of the
    limit the ``X-RateLimit-*`` headers describe (0: no limits)."""

    admitted: bool
    violated: int
    retry_ms: int
    leased: bool
    tightest: int
    shown: tuple[int, ...]
    reset_ms: tuple[int, ...]
    runs: tuple[int, ...]
    used: tuple[int, ...]


class StaleGeneration(Exception):
    """The account changed since the caller loaded it: reload and retry."""


class Backend(Protocol):
    name: str

    def ping(self) -> None: ...
    def initialize(self) -> None: ...
    def generation(self, account_id: int) -> str: ...
    def generations(self, account_ids: list[int]) -> dict[int, str]: ...
    def charge(self, subject: Subject, charge: Charge, now_ms: int) -> Decision: ...
    # Fenced: never takes units from counters created after ``at`` (see
    # RedisBackend.refund); may raise DatabaseError.
    def refund(self, account_id: int, units: int, *, at: float) -> None: ...
    def invalidate(self, account_ids: list[int]) -> None: ...
    def usage(self, account_ids: list[int], *, now: float | None = None) -> dict[int, dict[str, int]]: ...
    def traffic(self, keys_by_account: dict[int, list[int]], *, now: float | None = None) -> Traffic: ...
    def server_info(self) -> dict[str, Any]: ...
    # The usage ledger (quotas.flusher): usage not yet in the ledger handed
    # out as batches (the same ones again until acknowledged), forgotten once
    # applied; the token naming this life of the counters, set if missing,
    # and the server's run id.
    def drain(self) -> list[Batch]: ...
    def ack(self, batches: list[Batch]) -> None: ...
    def epoch(self, fresh: str) -> tuple[str, str]: ...
