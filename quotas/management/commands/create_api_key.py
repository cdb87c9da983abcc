import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser

from quotas.management.commands._base import run_service
from quotas.models import Account
from quotas.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for an account. The key is printed once, on the last line (or as JSON)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account")
        parser.add_argument("--label", default="")
        parser.add_argument("--json", action="store_true", help='print {"key", "prefix", "account", "plan"}')

    def handle(self, *args: Any, **options: Any) -> None:
        def create() -> Any:
            account = Account.objects.select_related("plan").filter(name=options["account"]).first()
            if account is None:
                raise ValidationError(f"No account named {options['account']!r}.")
            return api_key_create(account=account, label=options["label"])

        issued = run_service(create)
        account = issued.api_key.account
        if options["json"]:
            payload = {
                "key": issued.key,
                "prefix": issued.api_key.prefix,
                "account": account.name,
                "plan": account.plan.name,
            }
            self.stdout.write(json.dumps(payload))
            return
        self.stderr.write(f"API key for {account.name} (plan {account.plan.name}); it is shown only this once:")
        self.stdout.write(issued.key)
