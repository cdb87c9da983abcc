"""System checks of the validation settings (``manage.py check --deploy``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register

W001 = "{name} is 0: validations are not time-limited, and one hostile schema can hold a worker for minutes."


@register(Tags.security, deploy=True)
def check_time_limits(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    return [
        Warning(W001.format(name=name), hint="Leave it unset (2 s) outside benchmarks.", id="validation.W001")
        for name in ("VALIDATION_SYNC_TIME_LIMIT", "VALIDATION_RECORD_TIME_LIMIT")
        if float(getattr(settings, name, 2)) <= 0
    ]
