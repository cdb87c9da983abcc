"""Exact reference models of what Tollgate promises, for replaying the requests
a test saw served: GCRA per rate limit and counting per quota window.

Nothing here shares code with the limiter; it is the definition written
plainly. Times are integer milliseconds, as the limiter's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable


def gcra_refusals(served_ms: Iterable[int], count: int, period_ms: int) -> int:
    """How many of these served requests exact GCRA (a burst of ``count``,
    refilled at ``count`` per ``period_ms``, from a full bucket) would have
    refused, replayed in time order. Exact integer arithmetic: times are
    scaled by ``count``, so the emission interval is ``period_ms``."""
    tat: int | None = None
    refused = 0
    for at in sorted(served_ms):
        now = at * count
        candidate = (now if tat is None else max(tat, now)) + period_ms
        if candidate - period_ms * count > now:
            refused += 1
        else:
            tat = candidate
    return refused


def quota_excess(served: Iterable[tuple[int, int]], limit: int, window_of: Callable[[int], object]) -> int:
    """Units of ``(time ms, units)`` served beyond ``limit`` in any window
    (``window_of(ms)`` names a time's window): what exact counting would
    have refused."""
    used: Counter[object] = Counter()
    for at, units in served:
        used[window_of(at)] += units
    return sum(max(total - limit, 0) for total in used.values())
