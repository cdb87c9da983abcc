"""gunicorn settings (read automatically from the working directory).

The app is loaded in the master before forking (``preload_app``) so that the
Redis startup gate runs once and a refusal stops gunicorn with a non-zero
status instead of booting workers in a loop. Heroku and Render set ``PORT``
and ``WEB_CONCURRENCY``.
"""

import os

# project.serve (the Procfile's web command) has checked that both are numbers.
bind = [f"0.0.0.0:{os.environ.get('PORT', '8000')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
preload_app = True
# Heroku's router gives up after 30 s; free the worker before that.
timeout = 28
graceful_timeout = 20
# Keep connections from the platform's router open between requests.
keepalive = 5
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "").lower() in ("1", "true") else None
forwarded_allow_ips = "*"
# gunicorn 27's control socket (~/.gunicorn/gunicorn.ctl) is shared by every
# instance of a user on a host; Tollgate does not use it.
control_socket_disable = True

# LOG_FORMAT=json: gunicorn's own lines are JSON objects too (project.log_format),
# so that every line of the web's output parses.
if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "project.log_format.JsonFormatter"}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": "INFO", "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["json"], "propagate": False},
            # Access lines only when asked for, as in text mode (tollgate.request has them).
            "gunicorn.access": {"level": "INFO" if accesslog else "WARNING", "handlers": ["json"], "propagate": False},
        },
    }


def child_exit(server: object, worker: object) -> None:
    """A worker exited: its live gauges leave prometheus_client's sums (its
    counters and histograms stay counted). See project.serve."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
