from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The project itself as an app: its system checks and the gated
    ``runserver``/``rqworker`` commands."""

    name = "project"
    verbose_name = "Tollgate"

    def ready(self) -> None:
        from project import checks  # noqa: F401  (registers the checks)
