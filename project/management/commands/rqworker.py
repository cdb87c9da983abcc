"""django-rq's ``rqworker`` with the Redis startup gate and the worker's
database timeouts (``DATABASE_WORKER_*``: longer than the web's, since a job's
queries are not a client waiting, but bounded, so that a hung database never
hangs the worker).

In DEMO_MODE jobs run inside the web process, so the worker has nothing to do;
it says so and idles (exiting would stop every process under `make run` or any
Procfile runner).
"""

import logging
import signal
from typing import Any

from django.conf import settings
from django_rq.management.commands.rqworker import Command as RQWorkerCommand

from project.database import use_timeouts
from project.startup import gate

log = logging.getLogger("tollgate.startup")


class Command(RQWorkerCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        gate()
        use_timeouts(
            connect=settings.DATABASE_WORKER_CONNECT_TIMEOUT, statement=settings.DATABASE_WORKER_STATEMENT_TIMEOUT
        )
        if settings.DEMO_MODE:
            log.warning("⚠ DEMO_MODE: jobs run in the web process; this worker idles")
            signal.pause()
            return
        super().handle(*args, **options)
