"""django-rq's ``rqworker`` with the Redis startup gate.

In DEMO_MODE jobs run inside the web process, so the worker has nothing to do;
it says so and idles (exiting would stop every process under `make run` or any
Procfile runner).
"""

import logging
import signal
from typing import Any

from django.conf import settings
from django_rq.management.commands.rqworker import Command as RQWorkerCommand

from project.startup import gate

log = logging.getLogger("tollgate.startup")


class Command(RQWorkerCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        gate()
        if settings.DEMO_MODE:
            log.warning("⚠ DEMO_MODE: jobs run in the web process; this worker idles")
            signal.pause()
            return
        super().handle(*args, **options)
