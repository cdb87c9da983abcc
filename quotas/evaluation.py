"""``lua/charge.lua``'s logic in Python, for the in-memory backend.

:func:`evaluate` takes the typed call (subject, charge, time, quota windows)
and the account's fields (a dict shaped like the Redis hash), changes the
fields as the script changes the hash, and answers what the script answers.
It follows the script statement for statement, in exact integer arithmetic;
the script's header is the description of both, and a test holds the two
backends to identical answers on random traffic.
"""

from __future__ import annotations

from quotas.contract import DAY_MS, LEASE_MARGIN, QUOTA_FIELDS, Charge, ChargeReply, Subject, rate_field
from quotas.policy import Window


def _pair(stored: str | None) -> tuple[str, str] | None:
    if not stored:
        return None
    first, sep, second = stored.partition(":")
    if not sep or not first.isdigit() or not second.isdigit():
        return None
    return first, second


def _ring(fields: dict[str, str], name: str) -> list[str | int]:
    stored = _pair(fields.get(name))
    return [stored[0], int(stored[1])] if stored else ["", 0]


def evaluate(
    fields: dict[str, str],
    subject: Subject,
    charge: Charge,
    now: int,
    windows: tuple[Window, ...],
    margin: int = LEASE_MARGIN,
    pending: dict[str, int] | None = None,
) -> ChargeReply:
    """Decide ``charge`` at ``now`` (ms) and commit it to ``fields``, and the
    usage for the ledger to ``pending`` (shaped like the script's second
    hash). The caller has checked the generation."""
    rc, qc = charge.requests, charge.units
    lk, lu, le = charge.lease_requests, charge.lease_units, charge.lease_expires_ms
    give = charge.give_back
    giving = give is not None and (give.requests > 0 or give.units > 0)
    minute, bucket = now // 60_000, now // 600_000
    writes: dict[str, str] = {}
    names = [rate_field(subject.key_id, rate) for rate in subject.rates]
    count = [rate.count for rate in subject.rates]
    period = [rate.period_ms for rate in subject.rates]
    nr = len(names)

    ta: list[int | None] = []
    tb: list[int] = []
    run: list[int] = []
    budget: list[int] = []
    booked: list[bool] = []
    for name in names:
        stored = _pair(fields.get(name))
        ta.append(int(stored[0]) if stored else None)
        tb.append(int(stored[1]) if stored else 0)
        book = fields.get("l" + name[1:], "").split(":")
        valid = len(book) == 4 and book[0].isdigit() and book[1].lstrip("-").isdigit()
        run.append(int(book[0]) if valid else 0)
        if valid and ta[-1] is not None and book[2:] == [str(ta[-1]), str(tb[-1])]:
            budget.append(int(book[1]))
            booked.append(True)
        else:
            budget.append(-1)
            booked.append(False)
    qnames = [QUOTA_FIELDS[quota.window] for quota in subject.quotas]
    limit = [quota.count for quota in subject.quotas]
    window = [str(w.id) for w in windows]
    window_end = [w.end_ms for w in windows]
    used = []
    late = []  # the stored window is newer than the call's: see charge.lua
    for name, wid in zip(qnames, window, strict=True):
        stored = _pair(fields.get(name))
        used.append(int(stored[1]) if stored and stored[0] == wid else 0)
        late.append(stored is not None and int(stored[0]) > int(wid))
    rings: dict[str, list[str | int]] = {}
    touched: set[str] = set()

    def slot(name: str) -> list[str | int]:
        if name not in rings:
            rings[name] = _ring(fields, name)
        return rings[name]

    rate_changed = [False] * nr
    if give is not None and giving:
        for i in range(nr):
            tai = ta[i]
            if give.requests > 0 and booked[i] and tai is not None and run[i] == give.runs[i]:
                back = give.requests * period[i]
                da, db = divmod(back, count[i])
                need = da + (1 if db else 0)
                if budget[i] < 0 or need <= budget[i]:
                    back_a, back_b = tai - da, tb[i] - db
                    if back_b < 0:
                        back_a, back_b = back_a - 1, back_b + count[i]
                    ta[i], tb[i] = back_a, back_b
                    if budget[i] >= 0:
                        budget[i] -= need
                    rate_changed[i] = True
        for j, name in enumerate(qnames):
            stored = _pair(fields.get(name))
            if give.units > 0 and stored and stored[0] == str(give.windows[j]):
                left = max(int(stored[1]) - give.units, 0)
                if stored[0] == window[j]:
                    used[j] = left
                writes[name] = f"{stored[0]}:{left}"
        if give.requests > 0:
            for name, period_id in (
                (f"m{give.taken_ms // 60_000 % 60}", give.taken_ms // 60_000),
                (f"k{subject.key_id}:{give.taken_ms // 600_000 % 7}", give.taken_ms // 600_000),
            ):
                state = slot(name)
                if state[0] == str(period_id):
                    state[1] = max(int(state[1]) - give.requests, 0)
                    touched.add(name)

    def attempt(extra: int, extra_units: int, at: int) -> tuple[bool, int, int, list[int], list[int]]:
        ok, violated, retry = True, 0, 0
        na: list[int] = []
        nb: list[int] = []
        leasing = extra > 0 or extra_units > 0
        for i in range(nr):
            start = at if extra > 0 else now
            a, b = start, 0
            tai = ta[i]
            if tai is not None and tai + (1 if tb[i] else 0) > start:
                a, b = tai, tb[i]
            total = b + (rc + extra) * period[i]
            na.append(a + total // count[i])
            nb.append(total % count[i])
            over = na[i] + (1 if nb[i] else 0) - period[i] - now
            if over > 0:
                ok = False
                if over > retry:
                    violated, retry = i + 1, over
            elif extra > 0 and (now + period[i] - na[i]) * count[i] - nb[i] < margin * (rc + extra) * period[i]:
                ok = False
        for j in range(len(qnames)):
            if qc > 0 and (late[j] or used[j] + qc > limit[j]):
                ok = False
                wait = 1 if late[j] else window_end[j] - now
                if wait > retry:
                    violated, retry = nr + j + 1, wait
            elif leasing:
                total = used[j] + qc + extra_units
                if (
                    at > window_end[j]
                    or late[j]
                    or (extra_units > 0 and limit[j] - total < margin * (qc + extra_units))
                ):
                    ok = False
        return ok, violated, retry, na, nb

    leased = charge.leasing
    na: list[int] = []
    nb: list[int] = []
    ok, violated, retry = False, 0, 0
    if leased:
        ok, violated, retry, na, nb = attempt(lk, lu, le)
    if not ok:
        leased = False
        ok, violated, retry, na, nb = attempt(0, 0, now)
    admitted = violated == 0
    k, ku, at = 0, 0, now
    if leased:
        k, ku = lk, lu
        if lk > 0:
            at = le

    lefts: list[int] = []
    reset: list[int] = []
    runs: list[int] = []
    for i, name in enumerate(names):
        a, b = ta[i], tb[i]
        if admitted and rc + k > 0:
            if booked[i] or leased:
                if not booked[i] or not (a is not None and a + (1 if b else 0) > at):
                    run[i], budget[i] = run[i] + 1, -1
                elif a is not None and (budget[i] < 0 or a - at < budget[i]):
                    budget[i] = a - at
                booked[i] = True
            a, b = na[i], nb[i]
            rate_changed[i] = True
        if rate_changed[i]:
            writes[name] = f"{a}:{b}"
            if booked[i]:
                writes["l" + name[1:]] = f"{run[i]}:{budget[i]}:{a}:{b}"
        if a is not None and a + (1 if b else 0) > now:
            lefts.append(min(max(((now + period[i] - a) * count[i] - b) // period[i], 0), count[i]))
            reset.append(a + (1 if b else 0) - now)
        else:
            lefts.append(count[i])
            reset.append(0)
        runs.append(run[i] if booked[i] else 0)
    for j, name in enumerate(qnames):
        if admitted and qc + ku > 0:
            used[j] += qc + ku
            writes[name] = f"{window[j]}:{used[j]}"
        lefts.append(max(limit[j] - used[j], 0))
        reset.append(window_end[j] - now)
    tightest = violated
    if tightest == 0:
        for n in range(1, len(lefts) + 1):
            if (
                tightest == 0
                or lefts[n - 1] < lefts[tightest - 1]
                or (lefts[n - 1] == lefts[tightest - 1] and reset[n - 1] > reset[tightest - 1])
            ):
                tightest = n
    shown = tuple(value for n in range(len(lefts)) for value in (lefts[n], -(-reset[n] // 1000)))

    if admitted and rc + k > 0:
        for name, period_id in ((f"m{minute % 60}", minute), (f"k{subject.key_id}:{bucket % 7}", bucket)):
            state = slot(name)
            if state[0] != str(period_id):
                state[0], state[1] = str(period_id), 0
            state[1] = int(state[1]) + rc + k
            touched.add(name)
    for name in touched:
        writes[name] = f"{rings[name][0]}:{rings[name][1]}"
    fields.update(writes)
    if pending is not None:

        def usage(day: int, requests: int, units: int) -> None:
            for suffix, value in ((":r", requests), (":d", units - requests)):
                if value:
                    name = f"{subject.key_id}:{day}{suffix}"
                    pending[name] = pending.get(name, 0) + value

        if give is not None and giving:
            usage(give.taken_ms // DAY_MS, -give.requests, -give.units)
        if admitted and rc + k + qc + ku > 0:
            usage(now // DAY_MS, rc + k, qc + ku)
    return ChargeReply(admitted, violated, retry, leased, tightest, shown, tuple(reset), tuple(runs), tuple(used))
