"""The web process (Procfile ``web``): gunicorn serving ``project.wsgi`` with
``gunicorn.conf.py``, after checking the variables gunicorn itself reads when
it is imported, so that a bad ``WEB_CONCURRENCY`` or ``PORT`` stops with a
message naming it instead of a bare ``ValueError`` from inside gunicorn.

    python -m project.serve [gunicorn options]
"""

from __future__ import annotations

import os
import sys


def _check_whole_numbers(*names: str) -> None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value and not value.isdigit():
            raise SystemExit(f"{name} must be a whole number, not {value!r}.")


def main() -> None:
    _check_whole_numbers("WEB_CONCURRENCY", "PORT")
    from gunicorn.app.wsgiapp import run  # imported only now: it reads WEB_CONCURRENCY at import

    sys.argv = ["gunicorn", "project.wsgi", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
