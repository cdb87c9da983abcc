from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from quotas.management.commands._base import run_service
from quotas.services import account_create


class Command(BaseCommand):
    help = "Create an account (a tenant) on a plan."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--plan", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        account = run_service(lambda: account_create(name=options["name"], plan_name=options["plan"]))
        self.stdout.write(f"Created account {account.name} on plan {account.plan.name}")
