"""``lua/charge.lua``'s arguments and reply, encoded and decoded in one place.

The layout is described once, in the script's header. This module writes it:
:func:`command` turns a :class:`~quotas.contract.Charge` of a
:class:`~quotas.contract.Subject` into the bytes of one ``EVALSHA`` in the
Redis protocol (RESP), and :func:`decode` turns the script's reply into a
:class:`~quotas.contract.ChargeReply`.

Everything fixed for a key record and its quota windows (the generation,
the limits, the field names, the window ids) is encoded once per record and
UTC day and kept in the subject's ``memo``; a request encodes only its own
part (the time, the costs, a lease, a give-back). The memory backend never
comes here: it hands the same typed values to ``quotas.evaluation``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quotas.contract import (
    HASH_TTL_MS,
    LEASE_MARGIN,
    ONE,
    QUOTA_FIELDS,
    USAGE_SUFFIX,
    Charge,
    ChargeReply,
    StaleGeneration,
    Subject,
    rate_field,
)
from quotas.policy import Window, window_at
from quotas.traffic import BUCKET_MS, BUCKETS, MINUTES


def bulk(value: Any) -> bytes:
    """One argument as a RESP bulk string."""
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


def encode(*parts: Any) -> bytes:
    """A whole command in RESP: ``*N`` then each argument."""
    return b"*%d\r\n" % len(parts) + b"".join(bulk(part) for part in parts)


# The per-call part of a plain request after its time: cost 1 and 1, no
# lease, nothing given back.
_ONE_TAIL = bulk(1) + bulk(1) + bulk(0) * 5
# Arguments of a call besides the fixed part: now, two costs, three lease
# values, two give-back counts, the minute and the 10-minute bucket (then,
# for a give-back, 4 + R + Q more).
_CALL_ARGS = 12


@dataclass(frozen=True, slots=True, eq=False)
class Target:
    """Where the commands go: the script's SHA1, the account hash's name
    for an account id, and the lease margin. A backend builds a new one when
    its settings change; frames built for another are rebuilt."""

    script: bytes
    key: Callable[[int], str]
    margin: int = LEASE_MARGIN


@dataclass(frozen=True, slots=True)
class Frame:
    """The fixed part of a subject's commands for its quota windows:
    ``head`` is the command up to its per-call arguments (for a call without
    a give-back; ``head_giving`` with one) and ``period`` the traffic ring
    slots of the minute, valid for ``target`` while ``start_ms <= now <
    end_ms`` (within one minute and the quota windows)."""

    windows: tuple[Window, ...]
    start_ms: int
    end_ms: int
    head: bytes
    head_giving: bytes
    target: Target
    period: bytes


def windows_at(subject: Subject, now_ms: int) -> tuple[Window, ...]:
    """The current UTC window of each of the subject's quotas."""
    return tuple(window_at(quota.window, now_ms) for quota in subject.quotas)


def _frame(subject: Subject, now_ms: int, target: Target) -> Frame:
    windows = windows_at(subject, now_ms)
    fixed: list[Any] = [
        subject.generation,
        len(subject.rates),
        len(subject.quotas),
        subject.key_id,
        HASH_TTL_MS,
        target.margin,
    ]
    for rate in subject.rates:
        field = rate_field(subject.key_id, rate)
        fixed += (field, rate.count, rate.period_ms, "l" + field[1:])
    for quota, window in zip(subject.quotas, windows, strict=True):
        fixed += (QUOTA_FIELDS[quota.window], quota.count, window.id, window.end_ms)
    key = target.key(subject.account_id)
    body = bulk(b"EVALSHA") + bulk(target.script) + bulk(2) + bulk(key) + bulk(key + USAGE_SUFFIX)
    body += b"".join(bulk(part) for part in fixed)
    count = 5 + len(fixed) + _CALL_ARGS
    giving = count + 4 + len(subject.rates) + len(subject.quotas)
    # Valid within the minute (the traffic ring slots) and the quota windows.
    minute_start = now_ms - now_ms % 60_000
    start = max((window.start_ms for window in windows), default=minute_start)
    end = min((window.end_ms for window in windows), default=minute_start + 60_000)
    start, end = max(start, minute_start), min(end, minute_start + 60_000)
    head, head_giving = b"*%d\r\n" % count + body, b"*%d\r\n" % giving + body
    return Frame(windows, start, end, head, head_giving, target, _ring_fields(subject.key_id, now_ms))


def command(subject: Subject, charge: Charge, now_ms: int, target: Target) -> tuple[bytes, Frame]:
    """The ``EVALSHA`` of ``charge`` at ``now_ms`` for ``target``, and the
    frame it was built from (its quota windows are the decision's)."""
    frame: Frame | None = subject.memo.get("frame")
    if frame is None or frame.target is not target or not frame.start_ms <= now_ms < frame.end_ms:
        frame = subject.memo["frame"] = _frame(subject, now_ms, target)
    now = b"%d" % now_ms
    if charge is ONE:
        return b"%b$%d\r\n%b\r\n%b%b" % (frame.head, len(now), now, _ONE_TAIL, frame.period), frame
    parts = [
        now_ms,
        charge.requests,
        charge.units,
        charge.lease_requests,
        charge.lease_units,
        charge.lease_expires_ms,
    ]
    give_back = charge.give_back
    if give_back is None or not (give_back.requests or give_back.units):
        parts += (0, 0)
        return frame.head + b"".join(bulk(part) for part in parts) + frame.period, frame
    parts += (give_back.requests, give_back.units)
    tail = b"".join(bulk(part) for part in (*give_back.runs, *give_back.windows))
    return (
        frame.head_giving
        + b"".join(bulk(part) for part in parts)
        + frame.period
        + _ring_fields(subject.key_id, give_back.taken_ms)
        + tail
    ), frame


def _ring_fields(key_id: int, at_ms: int) -> bytes:
    """The traffic ring slots of ``at_ms``: minute id and field, 10-minute
    bucket id and field."""
    minute, bucket = at_ms // 60_000, at_ms // BUCKET_MS
    return b"".join(bulk(part) for part in (minute, f"m{minute % MINUTES}", bucket, f"k{key_id}:{bucket % BUCKETS}"))


def decode(raw: list[Any], rates: int, quotas: int) -> ChargeReply:
    """The script's reply as a :class:`ChargeReply`; raises
    :class:`StaleGeneration` when the account changed."""
    if raw[0] == -1:
        current = raw[1]
        raise StaleGeneration(current.decode() if isinstance(current, bytes) else str(current))
    limits = rates + quotas
    shown = 5 + 2 * limits
    resets = shown + limits
    # tuple.__new__ rather than ChargeReply(...): the same value, without the
    # named tuple's Python-level constructor on every request.
    return tuple.__new__(
        ChargeReply,
        (
            raw[0] == 1,
            raw[1],
            raw[2],
            raw[3] == 1,
            raw[4],
            tuple(raw[5:shown]),
            tuple(raw[shown:resets]),
            tuple(raw[resets : resets + rates]),
            tuple(raw[resets + rates :]),
        ),
    )
