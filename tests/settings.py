"""Settings for the test suite: production settings with a test secret.

Redis points nowhere here on purpose; tests/conftest.py starts a private
redis-server and overrides REDIS_URL and CACHES for the whole session.
"""

import os

for _name in (
    "DEMO_MODE",
    "REDIS_URL",
    "DEBUG",
    "RATELIMIT_FAIL_MODE",
    "RATELIMIT_LEASES",
    "HEALTH_TOKEN",
    "ENVIRONMENT",
):
    os.environ.pop(_name, None)
os.environ["SECRET_KEY"] = "tests-only-" + "x" * 50
os.environ["ENVIRONMENT"] = "test"

from project.settings import *  # noqa: E402,F403
from project.settings import BASE_DIR, DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that gunicorn and rqworker started by tests see
    # the same database.
    # One file per run, so that two runs on one machine do not collide.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".pytest-db-{os.getpid()}.sqlite3")}
