"""The web process (Procfile ``web``): gunicorn serving ``project.wsgi`` with
``gunicorn.conf.py``, after checking the variables gunicorn itself reads when
it is imported, so that a bad ``WEB_CONCURRENCY`` or ``PORT`` stops with a
message naming it instead of a bare ``ValueError`` from inside gunicorn.

    python -m project.serve [gunicorn options]

With ``METRICS_TOKEN`` set, it also prepares prometheus_client's
multiprocess mode before anything imports it: ``PROMETHEUS_MULTIPROC_DIR``
(a fresh temporary directory unless set; a set one is emptied of the last
run's files), where every gunicorn worker writes its values and ``/metrics``
sums them; ``gunicorn.conf.py``'s ``child_exit`` marks an exited worker dead.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def _check_whole_numbers(*names: str) -> None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value and not value.isdigit():
            raise SystemExit(f"{name} must be a whole number, not {value!r}.")


def prepare_metrics_directory() -> None:
    """Point prometheus_client at an empty multiprocess directory: a fresh
    one when metrics are on and none is set; a set one, emptied. A directory
    left by the last run would add its counts to this one's."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if not directory and not os.environ.get("METRICS_TOKEN", "").strip():
        return
    if not directory:
        directory = tempfile.mkdtemp(prefix="tollgate-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def main() -> None:
    _check_whole_numbers("WEB_CONCURRENCY", "PORT")
    prepare_metrics_directory()
    from gunicorn.app.wsgiapp import run  # imported only now: it reads WEB_CONCURRENCY at import

    sys.argv = ["gunicorn", "project.wsgi", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
