from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "quotas"
    verbose_name = "Plans, accounts and keys"

    def ready(self) -> None:
        from quotas import checks, signals  # noqa: F401  (registers the deploy checks, connects the invalidation handlers)
