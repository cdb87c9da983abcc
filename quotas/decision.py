"""What one charge decided, read from the reply of either backend.

A :class:`Decision` keeps the reply as it came and derives the per-limit
states only when something asks for them (the usage view, a 429's details);
the rate-limit headers of an admitted request are built straight from the
reply (``quotas.headers``), so the hot path builds no state objects.
"""

from __future__ import annotations

from typing import NamedTuple

from quotas.contract import ChargeReply, Subject
from quotas.policy import Window


class LimitState(NamedTuple):
    """One limit after a decision: ``window`` in seconds, ``reset_ms`` until
    the limit is whole again (quota window end, GCRA bucket full)."""

    name: str
    kind: str  # "rate" or "quota"
    limit: int
    window: int
    remaining: int
    reset_ms: int

    @property
    def reset(self) -> int:
        """Seconds until reset, rounded up."""
        return -(-self.reset_ms // 1000)


class Decision:
    """The outcome of one charge at ``at_ms``. ``retry_after`` (seconds) is 0
    when allowed; otherwise waiting that long is enough for the same charge to
    pass, unless the charge is larger than the quota itself."""

    __slots__ = ("_states", "at_ms", "header_entries", "headers", "reply", "subject", "windows")

    def __init__(self, subject: Subject, reply: ChargeReply, at_ms: int, windows: tuple[Window, ...]) -> None:
        self.subject = subject
        self.reply = reply
        self.at_ms = at_ms
        self.windows = windows
        self._states: tuple[LimitState, ...] | None = None
        # Filled by quotas.headers on first use: a leased decision serves many.
        self.headers: dict[str, str] | None = None
        self.header_entries: dict[str, tuple[str, str]] | None = None

    @property
    def allowed(self) -> bool:
        return self.reply.admitted

    @property
    def leased(self) -> bool:
        return self.reply.leased

    @property
    def retry_after(self) -> int:
        if self.reply.admitted:
            return 0
        return max(1, -(-self.reply.retry_ms // 1000))

    @property
    def states(self) -> tuple[LimitState, ...]:
        if self._states is None:
            reply, subject = self.reply, self.subject
            kinds = [(rate.name, "rate", rate.count, rate.period) for rate in subject.rates]
            kinds += [
                (quota.name, "quota", quota.count, window.seconds)
                for quota, window in zip(subject.quotas, self.windows, strict=True)
            ]
            self._states = tuple(
                LimitState(name, kind, limit, seconds, reply.shown[2 * index], reply.reset_ms[index])
                for index, (name, kind, limit, seconds) in enumerate(kinds)
            )
        return self._states

    @property
    def violated(self) -> LimitState | None:
        return self.states[self.reply.violated - 1] if self.reply.violated else None

    def reset_at(self, state: LimitState) -> int:
        """Epoch seconds (rounded up) at which ``state`` resets."""
        return -(-(self.at_ms + state.reset_ms) // 1000)
