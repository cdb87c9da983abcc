"""Django settings for Tollgate, read from the environment once, here.

Every variable is listed in the README's configuration table. A value the
service cannot run without in production has no default and fails here, at
startup; Redis is the exception because build commands (migrate, collectstatic,
check) must work with no Redis in reach: its absence is refused where the web
server and the worker start (``project.startup``) and reported by
``manage.py check --deploy``.
"""

from __future__ import annotations

import os
import sys
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from project import redis as redis_config

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def _env_number(name: str, default: float, kind: type[int] | type[float] = float) -> Any:
    """The variable ``name`` as a number of ``kind``; ImproperlyConfigured
    naming the variable when it is not one."""
    value = os.environ.get(name, "").strip()
    if not value:
        return kind(default)
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ImproperlyConfigured(f"{name} must be {what}, not {value!r}.") from None


def _env_choice(name: str, choices: tuple[str, ...]) -> str:
    """The variable ``name``, one of ``choices`` (the first is the default)."""
    value = os.environ.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = _env_bool("DEBUG")
# In-memory counters and queue, per process, lost on restart. The only way to
# run without Redis; project.startup says so loudly.
DEMO_MODE = _env_bool("DEMO_MODE")
ENVIRONMENT = os.environ.get("ENVIRONMENT", "development")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEBUG or DEMO_MODE):
        raise ImproperlyConfigured(
            "SECRET_KEY environment variable is required (DEBUG=true or DEMO_MODE=true "
            "use an insecure development key instead)."
        )
    # The same key in every process, so sessions survive across gunicorn
    # workers; `check --deploy` flags the django-insecure- prefix.
    SECRET_KEY = "django-insecure-tollgate-development-only-never-in-production"  # noqa: S105

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")
# Render names the service's own host here; its health checks and the
# onrender.com address keep working beside a custom domain.
if os.environ.get("RENDER_EXTERNAL_HOSTNAME"):
    ALLOWED_HOSTS.append(os.environ["RENDER_EXTERNAL_HOSTNAME"])

REDIS_URL = os.environ.get("REDIS_URL", "").strip()
# --- Redis roles and topologies (project.redis: counters_role, queue_role) --
# The counters' Redis: REDIS_URL, or a master found through Sentinel, or a
# Redis Cluster (one of the three). The queue's (RQ) is the counters' unless
# QUEUE_REDIS_URL or QUEUE_REDIS_SENTINEL_MASTER (a master of the same
# Sentinels) names its own; a Cluster needs QUEUE_REDIS_URL.
REDIS_SENTINELS = os.environ.get("REDIS_SENTINELS", "").strip()
REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "").strip()
REDIS_SENTINEL_PASSWORD = os.environ.get("REDIS_SENTINEL_PASSWORD", "")
REDIS_CLUSTER_NODES = os.environ.get("REDIS_CLUSTER_NODES", "").strip()
# The password and TLS of the Redis servers reached through Sentinel or in the
# Cluster (a URL carries its own), and the database number through Sentinel.
REDIS_PASSWORD = os.environ.get("REDIS_PASSWORD", "")
REDIS_TLS = _env_bool("REDIS_TLS")
REDIS_DB = _env_number("REDIS_DB", 0, int)
QUEUE_REDIS_URL = os.environ.get("QUEUE_REDIS_URL", "").strip()
QUEUE_REDIS_SENTINEL_MASTER = os.environ.get("QUEUE_REDIS_SENTINEL_MASTER", "").strip()
# How long the web server and the worker keep trying an unreachable Redis
# before they refuse to start. Platforms restart a process that exits, so a
# short wait plus a restart beats a long wait that hides the problem.
REDIS_STARTUP_WAIT = _env_number("REDIS_STARTUP_WAIT", 8)
HEALTH_TOKEN = os.environ.get("HEALTH_TOKEN", "")
# How often the admin's operations page refreshes itself, in seconds.
OPERATIONS_REFRESH_SECONDS = _env_number("OPERATIONS_REFRESH_SECONDS", 3)

RATELIMIT_FAIL_MODES = ("closed", "open")
RATELIMIT_FAIL_MODE = _env_choice("RATELIMIT_FAIL_MODE", RATELIMIT_FAIL_MODES)
# TLS certificate verification for rediss:// URLs. Heroku's Key-Value Store
# uses self-signed certificates and rotates REDIS_URL, so the choice lives in
# a variable of its own instead of in the URL (a ?ssl_cert_reqs= in the URL
# still wins).
REDIS_SSL_CERT_REQS = _env_choice("REDIS_SSL_CERT_REQS", redis_config.SSL_CERT_REQS)
# Far from every limit, a web process may reserve a busy key's next requests
# in the round trip of one (quotas.leases); false: one round trip per request.
RATELIMIT_LEASES = _env_bool("RATELIMIT_LEASES", default=True)

# --- Usage ledger (quotas.ledger, quotas.flusher) --------------------------
# How often the worker's flusher moves usage from Redis to the database, in
# seconds: also the most usage a Redis that loses its data can take with it.
USAGE_FLUSH_INTERVAL = _env_number("USAGE_FLUSH_INTERVAL", 1)

INSTALLED_APPS = [
    # First, so its runserver and rqworker (with the Redis gate) win.
    "project.apps.ProjectConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_rq",
    "quotas.apps.QuotasConfig",
    "validation.apps.ValidationConfig",
    "health.apps.HealthConfig",
    "apidocs.apps.ApiDocsConfig",
    "idempotency.apps.IdempotencyConfig",
    "webhooks.apps.WebhooksConfig",
]

MIDDLEWARE = [
    # X-Request-ID on every answer, in the request's log lines and error bodies.
    "project.request_id.RequestIdMiddleware",
    # Next: metrics and the request log line (with its id) see every answer and its time.
    "project.request_observer.RequestObserverMiddleware",
    # Answers the platform's health checks whatever Host they send (a probe
    # may use an internal address that ALLOWED_HOSTS does not list).
    "project.middleware.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Turns ApiError and faults into the one JSON error shape under /api/.
    "project.middleware.ApiErrorMiddleware",
    # Authenticates and meters /api/ before any other view middleware runs.
    "quotas.middleware.QuotaMiddleware",
    # Idempotency-Key on POST /api/v1/: right after the key is known, before
    # the view charges anything.
    "idempotency.middleware.IdempotencyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=600,
        conn_health_checks=True,
    )
}
# Bounds on every wait for PostgreSQL (project.postgresql): a connection
# attempt gives up after the connect timeout; a statement is cancelled by the
# server after the statement timeout, and given up by the client shortly after
# that if the server does not answer at all (hung, or its host gone). The
# web's are short (a request must answer); the worker's (set by
# `manage.py rqworker`) longer; `migrate` runs without a statement timeout.
DATABASE_CONNECT_TIMEOUT = _env_number("DATABASE_CONNECT_TIMEOUT", 2)
DATABASE_STATEMENT_TIMEOUT = _env_number("DATABASE_STATEMENT_TIMEOUT", 10)
DATABASE_WORKER_CONNECT_TIMEOUT = _env_number("DATABASE_WORKER_CONNECT_TIMEOUT", 5)
DATABASE_WORKER_STATEMENT_TIMEOUT = _env_number("DATABASE_WORKER_STATEMENT_TIMEOUT", 60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several web workers and the RQ worker share one file: wait for a lock
    # instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "project.postgresql"
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        connect_timeout=DATABASE_CONNECT_TIMEOUT, statement_timeout=DATABASE_STATEMENT_TIMEOUT
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if DEMO_MODE:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    # Built even when no Redis is set so that build commands load; nothing
    # connects until the gate or a request does. "default" is the counters'
    # pool, "queue" the queue's (the same pool unless configured apart).
    CACHES = redis_config.caches(sys.modules[__name__], REDIS_SSL_CERT_REQS)

# django-rq reuses a cache's connection pool: TLS, timeouts and retries are
# configured once, in project.redis.
_QUEUE_CACHE = "queue" if not DEMO_MODE and redis_config.queue_is_split(sys.modules[__name__]) else "default"
RQ_QUEUES = {
    "validation": {"USE_REDIS_CACHE": _QUEUE_CACHE, "DEFAULT_TIMEOUT": 3600},
    # Webhook deliveries: the worker takes them before the next validation job.
    "webhooks": {"USE_REDIS_CACHE": _QUEUE_CACHE, "DEFAULT_TIMEOUT": 60},
}
RQ = {
    "COMMIT_MODE": "on_db_commit",
    # `manage.py rqworker validation` runs this worker: RQ's own, plus the
    # sweep that recovers jobs whose queue entry was lost (validation.recovery).
    "WORKER_CLASS": "validation.worker.ValidationWorker",
}
RQ_SHOW_ADMIN_LINK = False

# --- Operations: worker liveness, metrics, logs, error tracking -------------
# Every worker heartbeats this often (idle or busy) and writes the interval
# into its registration; one silent for WORKER_LOST_AFTER heartbeats is shown
# as lost (health.rq_stats), and /health turns "degraded" while jobs wait with
# no live worker.
WORKER_HEARTBEAT_SECONDS = _env_number("WORKER_HEARTBEAT_SECONDS", 5, int)
WORKER_LOST_AFTER = _env_number("WORKER_LOST_AFTER", 3)
# /metrics (Prometheus text) needs this as a bearer token; unset, metrics are
# off: nothing is recorded and /metrics answers 404 (project.metrics).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
# text (readable, the default) or json (one object per line); both redacted.
LOG_FORMAT = _env_choice("LOG_FORMAT", ("text", "json"))
# One line per request (tollgate.request: route, status, duration, account);
# on by default with JSON logs, which log shippers index.
LOG_REQUESTS = _env_bool("LOG_REQUESTS", default=LOG_FORMAT == "json")
# Optional error tracking: unset, sentry-sdk is never initialised.
SENTRY_DSN = os.environ.get("SENTRY_DSN", "").strip()
SENTRY_TRACES_SAMPLE_RATE = _env_number("SENTRY_TRACES_SAMPLE_RATE", 0)

# --- Validation (schemas, sync validation, batch jobs) --------------------
# Recovery of jobs whose RQ entry vanished (validation.recovery): a running
# job whose heartbeat (written with its progress, about once a second) is
# older than VALIDATION_STALE_SECONDS lost its worker and is run again; every
# worker sweeps every VALIDATION_RECOVERY_INTERVAL seconds. A job whose
# workers died VALIDATION_MAX_ATTEMPTS times is failed and refunded.
VALIDATION_RECOVERY_INTERVAL = _env_number("VALIDATION_RECOVERY_INTERVAL", 10)
VALIDATION_STALE_SECONDS = _env_number("VALIDATION_STALE_SECONDS", 60)
VALIDATION_MAX_ATTEMPTS = _env_number("VALIDATION_MAX_ATTEMPTS", 3, int)
# A queued job younger than this is not yet expected in RQ (commit -> enqueue).
VALIDATION_ENQUEUE_GRACE = _env_number("VALIDATION_ENQUEUE_GRACE", 5)
# How often a running job writes its progress (and heartbeat), in seconds.
VALIDATION_PROGRESS_SECONDS = _env_number("VALIDATION_PROGRESS_SECONDS", 1)
# Instances nested deeper than this are rejected (record error too_deep).
VALIDATION_MAX_DEPTH = _env_number("VALIDATION_MAX_DEPTH", 64, int)
# Backtracking steps a `pattern` regex may take per match.
VALIDATION_REGEX_BACKTRACK_LIMIT = _env_number("VALIDATION_REGEX_BACKTRACK_LIMIT", 100000, int)
# The longest line / CSV record of an upload, in bytes.
VALIDATION_MAX_RECORD_BYTES = _env_number("VALIDATION_MAX_RECORD_BYTES", 16 * 1024 * 1024, int)
# Schemas nested deeper than this many JSON levels are refused (400 too_deep).
VALIDATION_MAX_SCHEMA_DEPTH = _env_number("VALIDATION_MAX_SCHEMA_DEPTH", 128, int)
# Time budgets (validation.guard), global for every plan: the validation of one
# sync request, and of one record of a job; 0 turns the guard off (benchmarks
# only). A job fails once more than VALIDATION_MAX_TIMEOUTS records were stopped.
VALIDATION_SYNC_TIME_LIMIT = _env_number("VALIDATION_SYNC_TIME_LIMIT", 2)
VALIDATION_RECORD_TIME_LIMIT = _env_number("VALIDATION_RECORD_TIME_LIMIT", 2)
VALIDATION_MAX_TIMEOUTS = _env_number("VALIDATION_MAX_TIMEOUTS", 10, int)
# Subschema evaluations one instance value may cost (validation.schema_cost).
VALIDATION_SCHEMA_COST_LIMIT = _env_number("VALIDATION_SCHEMA_COST_LIMIT", 25000, int)

# A finished job's files (its upload, its error report) are deleted by the
# worker this long after the job finished; the row stays.
VALIDATION_RETENTION_DAYS = _env_number("VALIDATION_RETENTION_DAYS", 7)

# The largest JSON body of a synchronous call is the plan's max_sync_body_bytes,
# never more than this ceiling: the body is held in memory, parsed whole, and
# validated within VALIDATION_SYNC_TIME_LIMIT (batch jobs stream instead).
VALIDATION_SYNC_BODY_CEILING_BYTES = _env_number("VALIDATION_SYNC_BODY_CEILING_BYTES", 64 * 1024 * 1024, int)
# Where error bodies' doc_url points (the docs page; an absolute URL such as
# https://tollgate.example.com/api/docs/ makes it clickable anywhere).
API_DOCS_URL = os.environ.get("API_DOCS_URL", "").strip() or "/api/docs/"

# --- Idempotency keys and webhooks ------------------------------------------
# The first answer to an Idempotency-Key is replayed for this many hours.
IDEMPOTENCY_KEY_HOURS = _env_number("IDEMPOTENCY_KEY_HOURS", 24)
# A first request still unanswered after this long died with its worker: a
# retry takes its key over. Must exceed gunicorn's timeout.
IDEMPOTENCY_LOCK_SECONDS = _env_number("IDEMPOTENCY_LOCK_SECONDS", 300)
# Webhook deliveries may go to private and loopback addresses (tests, make run).
WEBHOOKS_ALLOW_PRIVATE = _env_bool("WEBHOOKS_ALLOW_PRIVATE")
# The first retry of a failed delivery waits this long, each next one twice
# as long (at most 6 h), until WEBHOOK_RETRY_HOURS after the event.
WEBHOOK_RETRY_BASE_SECONDS = _env_number("WEBHOOK_RETRY_BASE_SECONDS", 30)
WEBHOOK_RETRY_HOURS = _env_number("WEBHOOK_RETRY_HOURS", 72)
# Finished deliveries (the admin's history) are deleted this long after the event.
WEBHOOK_DELIVERY_RETENTION_DAYS = _env_number("WEBHOOK_DELIVERY_RETENTION_DAYS", 30)

# --- Object storage (uploads and error reports) ----------------------------
# The local filesystem (MEDIA_ROOT) unless a bucket is named: then any
# S3-compatible bucket (AWS S3, Cloudflare R2, Backblaze B2, MinIO, Heroku's
# Bucketeer), through django-storages and boto3 (project.s3_storage). The web and
# the worker must then see the same bucket; they share nothing else.
AWS_STORAGE_BUCKET_NAME = os.environ.get("AWS_STORAGE_BUCKET_NAME", "").strip()
if AWS_STORAGE_BUCKET_NAME:
    _default_storage: dict[str, Any] = {
        "BACKEND": "project.s3_storage.StreamingS3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL", "").strip() or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME", "").strip() or None,
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID", "").strip() or None,
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "").strip() or None,
            # A key prefix, so that one bucket can serve several deployments.
            "location": os.environ.get("AWS_LOCATION", "").strip().strip("/"),
            "addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE", "").strip() or None,
            "connect_timeout": _env_number("STORAGE_CONNECT_TIMEOUT", 2),
            "read_timeout": _env_number("STORAGE_READ_TIMEOUT", 5),
            "max_attempts": _env_number("STORAGE_MAX_ATTEMPTS", 2, int),
            # Objects are private; nothing is ever served by URL.
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": True,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
# Serve app static files without a collectstatic step too (make run, tests).
WHITENOISE_USE_FINDERS = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Heroku's and Render's routers terminate TLS and say so in this header.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG and _env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", "")
# Off by default so that plain-HTTP health probes and local runs work; turn on
# (with HSTS) on a platform that terminates TLS.
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT")
SECURE_REDIRECT_EXEMPT = [r"^health"]
SECURE_HSTS_SECONDS = _env_number("SECURE_HSTS_SECONDS", 0, int)

# Every 500 is logged with its traceback and, when ADMINS is set, mailed to
# them: "Ops <ops@example.com>, dev@example.com". Mail goes out through
# EMAIL_HOST (Django's SMTP settings, from the variables of the same names).
ADMINS = [(name or address, address) for name, address in getaddresses([os.environ.get("ADMINS", "")]) if address]
SERVER_EMAIL = os.environ.get("SERVER_EMAIL", "tollgate@localhost")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _env_number("EMAIL_PORT", 25, int)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS")
EMAIL_TIMEOUT = 10

# The Redis password must never reach an error page or a 500 e-mail.
DEFAULT_EXCEPTION_REPORTER = "project.reporting.RedactingExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "project.reporting.RedactingExceptionReporterFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "project.reporting.RedactSecretsFilter"},
        "request_id": {"()": "project.request_id.RequestIdFilter"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"},
        "json": {"()": "project.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id", "redact"],
        },
        "mail_admins": {
            "level": "ERROR",
            "class": "django.utils.log.AdminEmailHandler",
            "filters": ["request_id", "redact", "require_debug_false"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "tollgate": {"level": "INFO"},
        # Replaces Django's default "django" logger (console + mail_admins),
        # which would mail every error twice with django.request's below.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "rq.worker": {"level": "INFO"},
        # 4xx answers (401, 429) are the product working, not incidents.
        "django.request": {"handlers": ["mail_admins"], "level": "ERROR"},
    },
}
