"""The DEMO_MODE counter backend: charge.lua's contract, in this process.

Counters live in a dict guarded by a lock: exact among the threads of one
process, invisible to every other process, lost on restart. Never used when
DEMO_MODE is off (project.startup refuses to start without Redis instead).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from quotas.limiter import (
    HASH_TTL_MS,
    QUOTA_FIELDS,
    Decision,
    StaleGeneration,
    Subject,
    Traffic,
    build_decision,
    charge_arguments,
    traffic_fields,
    traffic_from,
    window_at,
)


class MemoryBackend:
    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # account id -> (expires at ms, fields) like the Redis hash
        self._hashes: dict[int, tuple[int, dict[str, str]]] = {}

    def ping(self) -> None:
        return None

    def initialize(self) -> None:
        return None

    def _fields(self, account_id: int) -> dict[str, str]:
        """The account's fields; like a Redis TTL, expiry follows the real clock."""
        now_ms = int(time.time() * 1000)
        expires, fields = self._hashes.get(account_id, (0, {}))
        if expires <= now_ms:
            fields = {}
            self._hashes[account_id] = (now_ms + HASH_TTL_MS, fields)
        return fields

    def generation(self, account_id: int) -> str:
        with self._lock:
            fields = self._fields(account_id)
            return fields.setdefault("g", secrets.token_hex(8))

    def charge(
        self, subject: Subject, *, rate_cost: int = 1, quota_cost: int = 1, now: float | None = None
    ) -> Decision:
        now_ms = int((time.time() if now is None else now) * 1000)
        args, windows = charge_arguments(subject, rate_cost, quota_cost, now_ms)
        with self._lock:
            fields = self._fields(subject.account_id)
            if fields.get("g") != subject.generation:
                raise StaleGeneration(fields.get("g", ""))
            reply = self._evaluate(fields, args, now_ms, rate_cost, quota_cost)
        return build_decision(subject, reply, now_ms, windows)

    @staticmethod
    def _evaluate(fields: dict[str, str], args: list[Any], now: int, rate_cost: int, quota_cost: int) -> list[Any]:
        nr, nq = args[4], args[5]
        minute, minute_slot, bucket, bucket_slot = args[7:11]
        rates = [args[11 + 3 * i : 14 + 3 * i] for i in range(nr)]
        quotas = [args[11 + 3 * nr + 4 * j : 15 + 3 * nr + 4 * j] for j in range(nq)]
        writes: dict[str, str] = {}
        violated, retry = 0, 0
        rate_states = []
        for index, (field, count, period) in enumerate(rates, start=1):
            a, b = now, 0
            if field in fields:
                sa, sb = (int(part) for part in fields[field].split(":"))
                if sa + (1 if sb else 0) > now:
                    a, b = sa, sb
            nb = b + rate_cost * period
            na, nb = a + nb // count, nb % count
            over = na + (1 if nb else 0) - period - now
            if over > 0:
                if over > retry:
                    violated, retry = index, over
            elif rate_cost > 0:
                writes[field] = f"{na}:{nb}"
            rate_states.append((a, b, na, nb))
        quota_states = []
        for index, (field, limit, window, window_end) in enumerate(quotas, start=nr + 1):
            used = 0
            stored_window, _, stored_used = fields.get(field, "").partition(":")
            if stored_window == str(window):
                used = int(stored_used)
            if quota_cost > 0 and used + quota_cost > limit:
                if window_end - now > retry:
                    violated, retry = index, window_end - now
            elif quota_cost > 0:
                writes[field] = f"{window}:{used + quota_cost}"
            quota_states.append(used)
        admitted = violated == 0
        out: list[Any] = [1 if admitted else 0, "", violated, retry]
        for a, b, na, nb in rate_states:
            out += (na, nb) if admitted else (a, b)
        for used in quota_states:
            out.append(used + quota_cost if admitted else used)
        if admitted and rate_cost > 0:
            for slot, period_id in ((minute_slot, minute), (bucket_slot, bucket)):
                stored_id, _, count = fields.get(slot, "").partition(":")
                writes[slot] = f"{period_id}:{(int(count) if stored_id == str(period_id) else 0) + rate_cost}"
        if admitted:
            fields.update(writes)
        return out

    def refund(self, account_id: int, units: int, *, at: float) -> None:
        at_ms = int(at * 1000)
        with self._lock:
            fields = self._fields(account_id)
            for window, field in QUOTA_FIELDS.items():
                stored_window, _, used = fields.get(field, "").partition(":")
                if stored_window == str(window_at(window, at_ms).id):
                    fields[field] = f"{stored_window}:{max(int(used) - units, 0)}"

    def invalidate(self, account_ids: list[int]) -> None:
        with self._lock:
            for account_id in account_ids:
                if account_id in self._hashes:
                    self._hashes[account_id][1].pop("g", None)

    def usage(self, account_ids: list[int], *, now: float | None = None) -> dict[int, dict[str, int]]:
        now_ms = int((time.time() if now is None else now) * 1000)
        usage: dict[int, dict[str, int]] = {}
        with self._lock:
            for account_id in account_ids:
                fields = self._hashes.get(account_id, (0, {}))[1]
                usage[account_id] = {}
                for window, field in QUOTA_FIELDS.items():
                    stored_window, _, used = fields.get(field, "").partition(":")
                    current = stored_window == str(window_at(window, now_ms).id)
                    usage[account_id][window] = int(used) if current else 0
        return usage

    def traffic(self, keys_by_account: dict[int, list[int]], *, now: float | None = None) -> Traffic:
        now_ms = int((time.time() if now is None else now) * 1000)
        with self._lock:
            rows = []
            for account_id, key_ids in keys_by_account.items():
                fields = self._hashes.get(account_id, (0, {}))[1]
                rows.append((key_ids, [fields.get(name) for name in traffic_fields(key_ids)]))
        return traffic_from(rows, now_ms)

    def server_info(self) -> dict[str, Any]:
        return {}
