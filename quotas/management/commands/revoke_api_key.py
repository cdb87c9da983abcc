from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from quotas import keys
from quotas.management.commands._base import run_service
from quotas.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its prefix (the 8 characters after tg_) or the full key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        given = options["prefix"].strip()
        parsed = keys.parse(given)
        prefix = parsed.prefix if parsed else given.removeprefix("tg_").split("_")[0]
        api_key = run_service(lambda: api_key_revoke(prefix=prefix))
        self.stdout.write(f"Revoked API key tg_{api_key.prefix}_… of account {api_key.account.name}")
