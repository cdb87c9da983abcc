import logging

from django.apps import AppConfig
from django.conf import settings


class ProjectConfig(AppConfig):
    """The project itself as an app: its system checks and the gated
    ``runserver``/``rqworker`` commands."""

    name = "project"
    verbose_name = "Tollgate"

    def ready(self) -> None:
        from project import checks  # noqa: F401  (registers the checks)

        if settings.LOG_FORMAT == "json":
            # Python's warnings become log records too: every line is JSON.
            logging.captureWarnings(True)

        if settings.SENTRY_DSN:
            # Optional error tracking, with the logs' redaction (project.error_tracking).
            from project.error_tracking import sentry_init

            sentry_init(
                dsn=settings.SENTRY_DSN,
                environment=settings.ENVIRONMENT,
                traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE,
            )
