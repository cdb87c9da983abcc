from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "quotas"
    verbose_name = "Plans, accounts and keys"

    def ready(self) -> None:
        from quotas import signals  # noqa: F401  (connects the invalidation handlers)
