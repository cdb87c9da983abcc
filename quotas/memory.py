"""The DEMO_MODE counter backend: charge.lua's contract, in this process.

Counters live in a dict shaped like the Redis hashes, guarded by a lock, and
each charge runs ``quotas.evaluation`` (the script's logic in Python) on
them: exact among the threads of one process, invisible to every other
process, lost on restart. Never used when DEMO_MODE is off (project.startup
refuses to start without Redis instead).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from quotas.codec import windows_at
from quotas.contract import (
    CREATED_FIELD,
    DAY_MS,
    HASH_TTL_MS,
    LEASE_MARGIN,
    QUOTA_FIELDS,
    Charge,
    StaleGeneration,
    Subject,
    parse_quota_field,
)
from quotas.decision import Decision
from quotas.evaluation import evaluate
from quotas.ledger import Batch, fence_refund, restore_state
from quotas.policy import window_at
from quotas.traffic import Traffic, traffic_fields, traffic_from


class MemoryBackend:
    name = "memory"

    def __init__(self, *, lease_margin: int = LEASE_MARGIN) -> None:
        self.lease_margin = lease_margin
        self._lock = threading.Lock()
        # account id -> (expires at ms, fields) like the Redis hash
        self._hashes: dict[int, tuple[int, dict[str, str]]] = {}
        # account id -> usage fields of charge.lua's KEYS[2], and batches
        # handed to the flusher and not acknowledged
        self._pending: dict[int, dict[str, int]] = {}
        self._batches: dict[int, Batch] = {}
        self._epoch = ""

    def ping(self) -> None:
        return None

    def initialize(self) -> None:
        return None

    def _fields(self, account_id: int) -> dict[str, str] | None:
        """The account's fields, None if missing; like a Redis TTL, expiry
        follows the real clock."""
        now_ms = int(time.time() * 1000)
        expires, fields = self._hashes.get(account_id, (0, {}))
        if expires <= now_ms:
            self._hashes.pop(account_id, None)
            return None
        return fields

    def generation(self, account_id: int) -> str:
        """As the Redis backend's: a missing account is restored from the
        ledger first. Raises DatabaseError."""
        with self._lock:
            fields = self._fields(account_id)
            if fields is not None:
                return fields.setdefault("g", secrets.token_hex(8))
        now_ms = int(time.time() * 1000)
        state = restore_state(account_id=account_id, now_ms=now_ms)
        with self._lock:
            fields = self._fields(account_id)
            if fields is not None:  # another thread restored it meanwhile
                return fields.setdefault("g", secrets.token_hex(8))
            fields = {"g": secrets.token_hex(8), CREATED_FIELD: str(now_ms), **state.rates}
            today, first = now_ms // DAY_MS, window_at("month", now_ms).start_ms // DAY_MS
            day_units, month_units = state.day_units, state.month_units
            for entries in self._usage_of(account_id):
                for (_, day), (_, units, _) in entries.items():
                    day_units += units if day == today else 0
                    month_units += units if first <= day <= today else 0
            for window, units in (("day", day_units), ("month", month_units)):
                if units > 0:
                    fields[QUOTA_FIELDS[window]] = f"{window_at(window, now_ms).id}:{units}"
            self._hashes[account_id] = (now_ms + HASH_TTL_MS, fields)
            return fields["g"]

    def _usage_of(self, account_id: int) -> list[dict[tuple[int, int], list[int]]]:
        """The account's usage not in the ledger yet (pending, handed out)."""
        found = [self._entries(self._pending.get(account_id, {}))]
        if account_id in self._batches:
            found.append(self._batches[account_id].entries)
        return found

    @staticmethod
    def _entries(pending: dict[str, int]) -> dict[tuple[int, int], list[int]]:
        return Batch.from_fields(0, {name: str(value) for name, value in pending.items()}).entries

    def generations(self, account_ids: list[int]) -> dict[int, str]:
        return {account_id: self.generation(account_id) for account_id in account_ids}

    def charge(self, subject: Subject, charge: Charge, now_ms: int) -> Decision:
        """As the Redis backend's ``charge``: raises :class:`StaleGeneration`."""
        windows = windows_at(subject, now_ms)
        with self._lock:
            fields = self._fields(subject.account_id)
            if fields is None or fields.get("g") != subject.generation:
                raise StaleGeneration((fields or {}).get("g", ""))
            pending = self._pending.setdefault(subject.account_id, {})
            reply = evaluate(fields, subject, charge, now_ms, windows, self.lease_margin, pending)
        return Decision(subject, reply, now_ms, windows)

    def refund(self, account_id: int, units: int, *, at: float) -> None:
        """As the Redis backend's: fenced by the counters' creation time."""
        at_ms = int(at * 1000)
        with self._lock:
            fields = self._fields(account_id)
            created = int(fields.get(CREATED_FIELD, 0)) if fields is not None else None
            fenced = fields is None or (created is not None and created > at_ms)
            if fields is not None and not fenced:
                for window, field in QUOTA_FIELDS.items():
                    stored_window, _, used = fields.get(field, "").partition(":")
                    if stored_window == str(window_at(window, at_ms).id):
                        fields[field] = f"{stored_window}:{max(int(used) - units, 0)}"
                pending = self._pending.setdefault(account_id, {})
                day = at_ms // DAY_MS
                pending[f"0:{day}:d"] = pending.get(f"0:{day}:d", 0) - units
                pending[f"0:{day}:f"] = pending.get(f"0:{day}:f", 0) + units
        if fenced:
            fence_refund(account_id=account_id, units=units, at_ms=at_ms, created_ms=created or None)

    def drain(self) -> list[Batch]:
        """As the Redis backend's: pending usage handed out as batches, or
        the batches handed out before and not acknowledged."""
        now_ms = int(time.time() * 1000)
        with self._lock:
            for account_id, pending in list(self._pending.items()):
                if account_id not in self._batches and pending:
                    batch = Batch.from_fields(account_id, {name: str(value) for name, value in pending.items()})
                    batch.token, batch.drained_ms = secrets.token_hex(16), now_ms
                    self._batches[account_id] = batch
                    del self._pending[account_id]
            return list(self._batches.values())

    def ack(self, batches: list[Batch]) -> None:
        with self._lock:
            for batch in batches:
                if self._batches.get(batch.account_id) is batch:
                    del self._batches[batch.account_id]

    def epoch(self, fresh: str) -> tuple[str, str]:
        """This process's counters live as long as it does."""
        with self._lock:
            if not self._epoch:
                self._epoch = fresh
            return self._epoch, ""

    def invalidate(self, account_ids: list[int]) -> None:
        with self._lock:
            for account_id in account_ids:
                if account_id in self._hashes:
                    self._hashes[account_id][1].pop("g", None)

    def usage(self, account_ids: list[int], *, now: float | None = None) -> dict[int, dict[str, int]]:
        now_ms = int((time.time() if now is None else now) * 1000)
        with self._lock:
            return {
                account_id: {
                    window: parse_quota_field(
                        self._hashes.get(account_id, (0, {}))[1].get(field), window_at(window, now_ms).id
                    )
                    for window, field in QUOTA_FIELDS.items()
                }
                for account_id in account_ids
            }

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
