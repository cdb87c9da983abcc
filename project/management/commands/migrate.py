"""Django's ``migrate``, without the web's statement timeout: a migration may
rewrite or index a large table, which takes longer than any request may."""

from typing import Any

from django.conf import settings
from django.core.management.commands.migrate import Command as MigrateCommand

from project.database import use_timeouts


class Command(MigrateCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        use_timeouts(connect=settings.DATABASE_CONNECT_TIMEOUT, statement=0)
        super().handle(*args, **options)
