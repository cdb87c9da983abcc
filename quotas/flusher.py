"""The ledger's flusher: usage moved from Redis to the database, off the
request path, and the watch for a Redis that lost its data.

One :class:`Flusher` per process (``quotas.backends.process_flusher``) runs
as a thread of the Procfile's ``worker`` process
(``validation.worker.ValidationWorker`` starts it), and in DEMO_MODE in every
process that counts (``project.startup`` starts it). Every ``USAGE_FLUSH_INTERVAL``
seconds (1 by default) it:

1. reads the epoch token kept in Redis (set if missing) and the server's run
   id: a token that is not the one last recorded (:class:`CounterEpoch`)
   means Redis lost its data, which is logged as a warning and recorded, so
   that the operations page and ``/admin/health/redis`` show
   ``counters_restored_at``;
2. drains every account's usage into batches (``drain.lua``), applies them
   to the ledger once each (``quotas.ledger.ledger_apply``) and acknowledges
   them in Redis (``ack.lua``).

Killed at any point, it loses nothing and counts nothing twice: a batch
stays in Redis until the ledger holds its token, and the ledger adds a token
once. Several flushers (several worker dynos) may run at once for the same
reason. What a loss of Redis can take is what reached Redis in the last
interval and was not flushed yet (the README's *Durability*).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections
from django.utils import timezone

from quotas.contract import Backend
from quotas.ledger import ledger_apply, ledger_prune
from quotas.models import CounterEpoch
from quotas.outage import REDIS_DOWN

log = logging.getLogger("tollgate.quotas.ledger")

DEFAULT_INTERVAL = 1.0
# Tokens of applied batches are pruned this often (quotas.ledger.BATCH_RETENTION_DAYS).
PRUNE_SECONDS = 3600.0
# A flush failing pass after pass is logged once a minute, not every pass.
FAILURE_LOG_SECONDS = 60.0


def flush_interval() -> float:
    return max(0.05, float(getattr(settings, "USAGE_FLUSH_INTERVAL", DEFAULT_INTERVAL)))


@dataclass(frozen=True, slots=True)
class FlushReport:
    batches: int
    requests: int
    units: int
    lost: bool


class Flusher:
    """Moves usage from the counter backend to the ledger."""

    def __init__(self, *, backend: Callable[[], Backend]) -> None:
        self.backend = backend
        self.follow_forks = False
        self._epoch = ""
        self._run_id = ""
        self._pruned_at = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _flushers.add(self)

    def flush(self) -> FlushReport:
        """One pass: the epoch, then drain, apply, acknowledge. Raises the
        backend's and the database's errors (nothing is lost: what was not
        acknowledged is drained again)."""
        lost = self.check_epoch()
        backend = self.backend()
        batches = backend.drain()
        applied = ledger_apply(batches=batches)
        if applied:
            backend.ack(applied)
        if applied and time.monotonic() - self._pruned_at > PRUNE_SECONDS:  # an idle flusher writes nothing
            self._pruned_at = time.monotonic()
            ledger_prune(now=timezone.now())
        requests = sum(entry[0] for batch in applied for entry in batch.entries.values())
        return FlushReport(len(applied), requests, sum(batch.units for batch in applied), lost)

    def check_epoch(self) -> bool:
        """Whether Redis lost its data since the last recorded epoch (then
        logged and recorded once, by whichever flusher sees it first)."""
        backend = self.backend()
        token, run_id = backend.epoch(secrets.token_hex(16))
        if backend.name == "memory":  # DEMO_MODE: the counters live as long as the process, by design
            return False
        if token == self._epoch:
            if run_id and self._run_id and run_id != self._run_id:
                log.info("Redis restarted (run id %s) and kept its data (epoch %s)", run_id[:8], token[:8])
            self._run_id = run_id or self._run_id
            return False
        known = CounterEpoch.objects.filter(token=token).first()
        self._epoch, self._run_id = token, run_id
        if known is not None:
            return False
        previous = CounterEpoch.objects.order_by("-seen_at", "-pk").first()
        lost = previous is not None
        try:
            CounterEpoch.objects.create(token=token, run_id=run_id, lost=lost)
        except IntegrityError:  # another flusher recorded it first
            return False
        if lost:
            log.warning(
                "Redis lost its data (epoch %s is gone, now %s): counters not yet flushed are lost; each account's "
                "counters are restored from the usage ledger before it is admitted again",
                previous.token[:8] if previous else "",
                token[:8],
            )
        return lost

    def run(self) -> None:
        """Flush every interval until :meth:`stop`; errors are logged and the
        next pass tries again. A last pass runs when stopped."""
        failing_since: float | None = None
        while True:
            stopping = self._stop.wait(flush_interval())
            try:
                report = self.flush()
                if failing_since is not None:
                    log.info("Ledger flushes work again")
                    failing_since = None
                if report.batches:
                    log.debug(
                        "Ledger: %s batch(es), %s requests, %s units", report.batches, report.requests, report.units
                    )
            except (*REDIS_DOWN, DatabaseError) as exc:
                # Once when it starts, then once a minute while it lasts.
                now = time.monotonic()
                if failing_since is None or now - failing_since >= FAILURE_LOG_SECONDS:
                    failing_since = now
                    log.warning("Ledger flush failed (%s); usage waits in Redis, retrying", type(exc).__name__)
            except Exception:
                # Anything else is a bug: logged with its traceback (and mailed
                # to ADMINS), but the thread lives on, since usage keeps
                # arriving in Redis and waits there for the next pass.
                log.exception("Ledger flush failed; retrying")
            finally:
                # This thread's database connection is closed after every
                # pass: the RQ worker forks a work horse per job, which must
                # not inherit an open database socket (as its sweeps do).
                connections.close_all()
            if stopping:
                return

    def start(self, *, follow_forks: bool = False) -> threading.Thread:
        """Run in a daemon thread of this process (once); ``follow_forks``:
        and in every child forked after (DEMO_MODE's gunicorn workers, whose
        counters are their own)."""
        self.follow_forks = self.follow_forks or follow_forks
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name="tollgate-ledger", daemon=True)
            self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after one last pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


_flushers: weakref.WeakSet[Flusher] = weakref.WeakSet()


def _after_fork() -> None:
    # The thread does not survive a fork; a child that counts on its own
    # (DEMO_MODE) runs its own. RQ's work horses do not: their parent flushes.
    for flusher in list(_flushers):
        flusher._thread = None
        flusher._stop = threading.Event()
        if flusher.follow_forks:
            flusher.start()


os.register_at_fork(after_in_child=_after_fork)
