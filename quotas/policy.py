"""Plans as data: rate limits and quotas, their text form and their names.

A plan's limits are written the same way everywhere (the admin, ``set_plan``,
the README)::

    rate limits:  "10/s, 100/m, 5000/h"      count per period (s, m, h, d)
    quotas:       "10000/day, 200000/month"  units per UTC calendar window

Rate limits count requests per API key and are enforced with GCRA (smooth, no
burst of 2x at a window edge). Quotas count units (one per request, one per
validated record) per account over the UTC calendar day or month.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from django.core.exceptions import ValidationError

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WINDOWS = ("day", "month")
# A rate limit's period is at most 31 days: longer promises are quotas.
MAX_PERIOD_SECONDS = 31 * 86400
MAX_COUNT = 10**9
# GCRA state is kept exact in integer arithmetic inside Lua, whose numbers are
# doubles: count x period (ms) must stay well below 2**53.
MAX_COUNT_TIMES_PERIOD_MS = 2**50

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
_QUOTA = re.compile(r"^\s*(\d+)\s*/\s*(day|month)\s*$")
_PERIOD_NAMES = {1: "per-second", 60: "per-minute", 3600: "per-hour", 86400: "per-day"}
_EPOCH = date(1970, 1, 1)
_QUOTA_NAMES = {"day": "daily-quota", "month": "monthly-quota"}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` requests per ``period`` seconds, per API key."""

    count: int
    period: int

    @property
    def name(self) -> str:
        return _PERIOD_NAMES.get(self.period) or f"per-{self.period}s"

    @property
    def period_ms(self) -> int:
        return self.period * 1000

    def __str__(self) -> str:
        for unit, seconds in sorted(PERIODS.items(), key=lambda item: -item[1]):
            if self.period % seconds == 0:
                multiple = self.period // seconds
                return f"{self.count}/{'' if multiple == 1 else multiple}{unit}"
        raise AssertionError("periods are whole seconds")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Quota:
    """At most ``count`` units per UTC calendar ``window`` (day or month), per account."""

    count: int
    window: str

    @property
    def name(self) -> str:
        return _QUOTA_NAMES[self.window]

    def __str__(self) -> str:
        return f"{self.count}/{self.window}"


def parse_rate(text: str) -> RateLimit:
    """``"100/m"`` (or ``"100/5m"``) as a :class:`RateLimit`; raises ValidationError."""
    match = _RATE.match(text)
    if not match:
        raise ValidationError(
            f"{text.strip()!r} is not a rate limit; write COUNT/PERIOD, e.g. 100/m "
            "(PERIOD: s, m, h or d, optionally with a multiple such as 10s).",
            code="invalid_rate",
        )
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
    period = multiple * PERIODS[unit]
    if not 1 <= count <= MAX_COUNT:
        raise ValidationError(f"{text.strip()!r}: the count must be 1 to {MAX_COUNT}.", code="invalid_rate")
    if not 1 <= period <= MAX_PERIOD_SECONDS:
        raise ValidationError(f"{text.strip()!r}: the period must be 1s to 31d.", code="invalid_rate")
    if count * period * 1000 > MAX_COUNT_TIMES_PERIOD_MS:
        raise ValidationError(
            f"{text.strip()!r} is finer than the limiter counts; use a shorter period "
            "for the same rate (e.g. 1000/s rather than 86400000/d).",
            code="invalid_rate",
        )
    return RateLimit(count, period)


def parse_quota(text: str) -> Quota:
    """``"10000/day"`` as a :class:`Quota`; raises ValidationError."""
    match = _QUOTA.match(text)
    if not match:
        raise ValidationError(
            f"{text.strip()!r} is not a quota; write COUNT/WINDOW, e.g. 10000/day (WINDOW: day or month).",
            code="invalid_quota",
        )
    count = int(match[1])
    if not 1 <= count <= MAX_COUNT:
        raise ValidationError(f"{text.strip()!r}: the count must be 1 to {MAX_COUNT}.", code="invalid_quota")
    return Quota(count, match[2])


def _split(text: str) -> list[str]:
    return [part for part in (piece.strip() for piece in text.split(",")) if part]


def parse_rates(text: str) -> tuple[RateLimit, ...]:
    """A comma-separated list of rate limits; periods must be distinct."""
    rates = tuple(parse_rate(part) for part in _split(text))
    if len({rate.period for rate in rates}) != len(rates):
        raise ValidationError("Each period may have only one rate limit.", code="duplicate_rate")
    return tuple(sorted(rates, key=lambda rate: rate.period))


def parse_quotas(text: str) -> tuple[Quota, ...]:
    """A comma-separated list of quotas; at most one per window."""
    quotas = tuple(parse_quota(part) for part in _split(text))
    if len({quota.window for quota in quotas}) != len(quotas):
        raise ValidationError("Each window (day, month) may have only one quota.", code="duplicate_quota")
    return tuple(sorted(quotas, key=lambda quota: WINDOWS.index(quota.window)))


def format_limits(limits: tuple[RateLimit, ...] | tuple[Quota, ...]) -> str:
    return ", ".join(str(limit) for limit in limits)


@dataclass(frozen=True, slots=True)
class Window:
    """One UTC calendar window: its id (``20261126``, ``202611``), start and end in ms."""

    id: int
    start_ms: int
    end_ms: int

    @property
    def seconds(self) -> int:
        return (self.end_ms - self.start_ms) // 1000


_current: dict[str, Window] = {}


def window_at(window: str, now_ms: int) -> Window:
    """The UTC ``window`` ("day" or "month") containing ``now_ms`` (the
    current one is remembered: every request asks for it)."""
    known = _current.get(window)
    if known is not None and known.start_ms <= now_ms < known.end_ms:
        return known
    found = _window_at(window, now_ms)
    if known is None or found.start_ms > known.start_ms:
        _current[window] = found
    return found


def _window_at(window: str, now_ms: int) -> Window:
    day_start_ms = now_ms - now_ms % 86_400_000
    today = _EPOCH + timedelta(days=day_start_ms // 86_400_000)
    if window == "day":
        return Window(today.year * 10000 + today.month * 100 + today.day, day_start_ms, day_start_ms + 86_400_000)
    start_ms = day_start_ms - (today.day - 1) * 86_400_000
    days = calendar.monthrange(today.year, today.month)[1]
    return Window(today.year * 100 + today.month, start_ms, start_ms + days * 86_400_000)
