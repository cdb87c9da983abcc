"""WSGI entry point (gunicorn loads ``project.wsgi``).

The startup gate runs at import: with ``preload_app`` (gunicorn.conf.py) that
is in gunicorn's master, which then exits before forking any worker.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

application = get_wsgi_application()

from project.startup import gate  # noqa: E402  (needs django.setup() first)

gate()
