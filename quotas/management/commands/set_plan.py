from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from quotas.management.commands._base import run_service
from quotas.services import plan_set


class Command(BaseCommand):
    help = (
        "Create or update a plan. --rate and --quota may be repeated; when given, "
        "they replace the plan's list. Example: set_plan starter --rate 10/s --rate 500/m "
        "--quota 10000/day --quota 200000/month --max-upload-mb 100 --max-sync-instances 100"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--rate", action="append", metavar="N/PERIOD", help="PERIOD: s, m, h or d (e.g. 100/m)")
        parser.add_argument("--quota", action="append", metavar="N/WINDOW", help="WINDOW: day or month")
        parser.add_argument("--no-rate", action="store_true", help="remove every rate limit")
        parser.add_argument("--no-quota", action="store_true", help="remove every quota")
        parser.add_argument("--max-upload-mb", type=int, metavar="N")
        parser.add_argument("--max-sync-instances", type=int, metavar="N")
        parser.add_argument(
            "--max-sync-body-kb", type=int, metavar="N", help="largest synchronous JSON body (capped by the ceiling)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rates = [] if options["no_rate"] else options["rate"]
        quotas = [] if options["no_quota"] else options["quota"]
        plan, created = run_service(
            lambda: plan_set(
                name=options["name"],
                rate_limits=rates,
                quotas=quotas,
                max_upload_mb=options["max_upload_mb"],
                max_sync_instances=options["max_sync_instances"],
                max_sync_body_kb=options["max_sync_body_kb"],
            )
        )
        self.stdout.write(
            f"{'Created' if created else 'Updated'} plan {plan.name}: rate limits [{plan.rate_limits}], "
            f"quotas [{plan.quotas}], max upload {plan.max_upload_bytes // (1024 * 1024)} MB, "
            f"max {plan.max_sync_instances} instances per call, max sync body {plan.max_sync_body_bytes // 1024} KB"
        )
