"""``manage.py flush_usage [--once]``: move usage from Redis to the ledger.

The Procfile's worker already does this every ``USAGE_FLUSH_INTERVAL``
seconds (``quotas.flusher``); this command is for a one-off pass (before
maintenance on Redis) or a flusher of its own. Safe to run beside the worker:
every batch is applied once, whoever applies it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from quotas.backends import process_flusher


class Command(BaseCommand):
    help = "Move usage not yet in the ledger from Redis to the database (once, or every USAGE_FLUSH_INTERVAL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, *args: Any, once: bool = False, **options: Any) -> None:
        flusher = process_flusher()
        if once:
            report = flusher.flush()
            self.stdout.write(
                f"Flushed {report.batches} batch(es): {report.requests} requests, {report.units} units."
                + (" Redis had lost its data since the last flush." if report.lost else "")
            )
            return
        try:
            flusher.run()
        except KeyboardInterrupt:
            flusher.stop()
