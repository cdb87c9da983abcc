import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from quotas.management.commands._base import run_service
from quotas.models import Account
from quotas.services import api_key_create, plan_set

# The plan `make run` sets up, chosen so that a person trying the API by hand
# can see every mechanism: a burst of 10 is allowed, the 11th request within a
# second gets a 429, and the quotas are far away.
DEMO_PLAN: dict[str, Any] = {
    "name": "demo",
    # 10 requests in a burst, refilled at 10/s: curl in a loop hits it.
    "rate_limits": ["10/s", "600/m"],
    # Plenty for an afternoon of trying, small enough to read in the headers.
    "quotas": ["10000/day", "100000/month"],
    "max_upload_mb": 50,
    "max_sync_instances": 100,
}
DEMO_ACCOUNT = "demo"


class Command(BaseCommand):
    help = "Create (or update) the demo plan and account, issue a new key and print it with a curl line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")

    def handle(self, *args: Any, **options: Any) -> None:
        def seed() -> Any:
            plan, _ = plan_set(
                name=DEMO_PLAN["name"],
                rate_limits=DEMO_PLAN["rate_limits"],
                quotas=DEMO_PLAN["quotas"],
                max_upload_mb=DEMO_PLAN["max_upload_mb"],
                max_sync_instances=DEMO_PLAN["max_sync_instances"],
            )
            account, _ = Account.objects.get_or_create(name=DEMO_ACCOUNT, defaults={"plan": plan})
            return api_key_create(account=account, label="make run")

        issued = run_service(seed)
        base = options["base_url"].rstrip("/")
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"Demo API key (plan {DEMO_PLAN['name']}; shown once): {issued.key}",
                    "Try it:",
                    f'  curl -i -H "Authorization: Bearer {issued.key}" {base}/api/v1/ping',
                    "",
                ]
            )
        )
