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
from quotas.policy import window_at
from quotas.traffic import Traffic, traffic_fields, traffic_from


class MemoryBackend:
    name = "memory"

    def __init__(self, *, lease_margin: int = LEASE_MARGIN) -> None:
        self.lease_margin = lease_margin
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

    def generations(self, account_ids: list[int]) -> dict[int, str]:
        return {account_id: self.generation(account_id) for account_id in account_ids}

    def charge(self, subject: Subject, charge: Charge, now_ms: int) -> Decision:
        """As the Redis backend's ``charge``: raises :class:`StaleGeneration`."""
        windows = windows_at(subject, now_ms)
        with self._lock:
            fields = self._fields(subject.account_id)
            if fields.get("g") != subject.generation:
                raise StaleGeneration(fields.get("g", ""))
            reply = evaluate(fields, subject, charge, now_ms, windows, self.lease_margin)
        return Decision(subject, reply, now_ms, windows)

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
