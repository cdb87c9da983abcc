"""``manage.py export_usage --month 2026-11 [--format csv|json]``: one UTC
month of the usage ledger per account and key, for billing, on stdout.

Run a flush first (``manage.py flush_usage --once``) to include the last
second of usage still in Redis; a month is complete once it has ended and the
worker's flusher has run since.
"""

from __future__ import annotations

import csv
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from quotas.history import BillingRow, parse_month, usage_export
from quotas.management.commands._base import EXIT_BAD_ARGUMENTS


class Command(BaseCommand):
    help = "Export one UTC month of the usage ledger per account and key (CSV or JSON, on stdout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", required=True, help="The UTC month, YYYY-MM.")
        parser.add_argument("--format", choices=("csv", "json"), default="csv")

    def handle(self, *args: Any, month: str, format: str = "csv", **options: Any) -> None:
        try:
            first = parse_month(month)
        except ValueError:
            raise CommandError(
                f"--month must be YYYY-MM, e.g. 2026-11 (got {month!r}).", returncode=EXIT_BAD_ARGUMENTS
            ) from None
        rows = usage_export(month=first)
        if format == "json":
            self.stdout.write(
                json.dumps([dict(zip(BillingRow.FIELDS, row.values(), strict=True)) for row in rows], indent=2)
            )
            return
        writer = csv.writer(self.stdout, lineterminator="\n")
        writer.writerow(BillingRow.FIELDS)
        for row in rows:
            writer.writerow(row.values())
