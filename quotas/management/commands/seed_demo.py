"""The demo plan, account and key that `make run` prints.

The demo account keeps exactly one usable key made by this command (label
``make run``). With ``--key-file`` the key is kept in that file (mode 600), so
that the next run prints the same key again while it still works; whenever a
new key is printed, the demo keys made before are revoked.
"""

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from quotas import keys
from quotas.management.commands._base import run_service
from quotas.models import Account, ApiKey
from quotas.services import api_key_create, api_key_revoke, plan_set

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
DEMO_LABEL = "make run"


def _still_usable(account: Account, key: str) -> ApiKey | None:
    """The demo key ``key`` names, if it is this account's, made by this
    command, and neither revoked nor expired."""
    parsed = keys.parse(key)
    if parsed is None:
        return None
    api_key = ApiKey.objects.filter(account=account, label=DEMO_LABEL, prefix=parsed.prefix).first()
    if api_key is None or api_key.is_revoked or api_key.is_expired:
        return None
    return api_key if keys.secret_matches(parsed.secret, api_key.secret_hash) else None


def demo_key(*, kept: str) -> str:
    """The demo plan and account (created or updated) and their one usable
    demo key: ``kept`` when it still works, else a new one. Every other demo
    key of the account is revoked."""
    plan, _ = plan_set(
        name=DEMO_PLAN["name"],
        rate_limits=DEMO_PLAN["rate_limits"],
        quotas=DEMO_PLAN["quotas"],
        max_upload_mb=DEMO_PLAN["max_upload_mb"],
        max_sync_instances=DEMO_PLAN["max_sync_instances"],
    )
    account, _ = Account.objects.get_or_create(name=DEMO_ACCOUNT, defaults={"plan": plan})
    current = _still_usable(account, kept)
    if current is None:
        issued = api_key_create(account=account, label=DEMO_LABEL)
        current, kept = issued.api_key, issued.key
    others = account.api_keys.filter(label=DEMO_LABEL, revoked_at=None).exclude(pk=current.pk)
    for prefix in others.values_list("prefix", flat=True):
        api_key_revoke(prefix=prefix)
    return kept


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


class Command(BaseCommand):
    help = (
        "Create (or update) the demo plan and account and print their one demo key with a curl line. "
        "With --key-file the key is kept there and printed again while it works; a new key revokes the old."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")
        parser.add_argument("--key-file", type=Path, help="where the demo key is kept between runs (mode 600)")

    def handle(self, *args: Any, **options: Any) -> None:
        key_file: Path | None = options["key_file"]
        kept = key_file.read_text().strip() if key_file and key_file.is_file() else ""
        key = run_service(lambda: demo_key(kept=kept))
        if key_file and key != kept:
            _write_private(key_file, key + "\n")
        base = options["base_url"].rstrip("/")
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"Demo API key (plan {DEMO_PLAN['name']}): {key}",
                    "Try it:",
                    f'  curl -i -H "Authorization: Bearer {key}" {base}/api/v1/ping',
                    "",
                ]
            )
        )
