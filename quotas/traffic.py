"""Traffic counters for the operations page, kept in each account's hash and
written by the same script that charges (no extra round trip): admitted
requests per account per minute (a ring of 60: the last hour) and per key per
10 minutes (a ring of 7: the current bucket and the six before it, so at least
the last full hour). Leased requests count from the moment they are leased
and are taken off again when given back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BUCKET_MS = 600_000
MINUTES, BUCKETS = 60, 7


@dataclass(frozen=True, slots=True)
class Traffic:
    """Admitted requests over the last hour: ``per_minute`` is 60 pairs
    ``(minute start, epoch seconds; count)``, oldest first, the current
    minute last; ``per_key`` counts each key's requests in the current
    10-minute bucket and the six before it (60 to 70 minutes)."""

    per_minute: list[tuple[int, int]]
    per_key: dict[int, int]


def traffic_fields(key_ids: list[int]) -> list[str]:
    """The hash fields read for :class:`Traffic`: the minute ring, then each
    key's bucket ring."""
    return [f"m{slot}" for slot in range(MINUTES)] + [
        f"k{key_id}:{slot}" for key_id in key_ids for slot in range(BUCKETS)
    ]


def traffic_from(rows: list[tuple[list[int], list[Any]]], now_ms: int) -> Traffic:
    """Sum the traffic fields of several accounts (``(key ids, HMGET values)``)."""
    minute_now, bucket_now = now_ms // 60_000, now_ms // BUCKET_MS
    minutes = dict.fromkeys(range(minute_now - MINUTES + 1, minute_now + 1), 0)
    per_key: dict[int, int] = {}
    for key_ids, values in rows:
        for raw in values[:MINUTES]:
            period, count = _parse_counter(raw)
            if period in minutes:
                minutes[period] += count
        for index, key_id in enumerate(key_ids):
            total = 0
            for raw in values[MINUTES + index * BUCKETS : MINUTES + (index + 1) * BUCKETS]:
                period, count = _parse_counter(raw)
                if bucket_now - BUCKETS < period <= bucket_now:
                    total += count
            per_key[key_id] = total
    return Traffic([(minute * 60, count) for minute, count in minutes.items()], per_key)


def _parse_counter(raw: bytes | str | None) -> tuple[int, int]:
    if not raw:
        return -1, 0
    period, _, count = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
    return int(period), int(count)
