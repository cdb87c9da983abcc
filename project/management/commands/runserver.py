"""``runserver`` with the Redis startup gate.

The gate runs in the process that serves: the autoreloader's child, or the
only process with ``--noreload``. A refusal exits that process with status 4,
which the autoreloader's parent passes on instead of restarting.
"""

import os
from typing import Any

from django.contrib.staticfiles.management.commands.runserver import Command as StaticRunserver
from django.utils import autoreload

from project.startup import gate


class Command(StaticRunserver):
    def handle(self, *args: Any, **options: Any) -> None:
        serving_here = not options["use_reloader"] or os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true"
        if serving_here:
            gate()
        super().handle(*args, **options)
