"""Django's PostgreSQL backend (psycopg 3) with bounded waits.

``project.settings`` uses it for every ``postgres://`` ``DATABASE_URL``. On
top of Django's backend:

- ``OPTIONS["connect_timeout"]`` (seconds) bounds a connection attempt,
  including the server's answer to it (psycopg enforces it itself).
- ``OPTIONS["statement_timeout"]`` (seconds, 0 for none) is the server's
  ``statement_timeout``, and the client gives up on any wait for the server
  (a query, a commit, Django's health check) one second after it. A server
  that is hung (SIGSTOP, a frozen host) still has its kernel acknowledge every
  packet, so neither TCP nor the server's own timeout would ever end that
  wait; psycopg's ``wait(timeout=)`` does, and the connection is then closed.
- Connection failures trip the breaker of ``project.database.outage``, and
  while it is open no connection is attempted: the attempt fails at once.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg.errors import _WaitTimeout  # psycopg's own "wait timed out" (an OperationalError)

from project.database import outage

# How long after the server's statement timeout the client stops waiting.
DEADLINE_MARGIN = 1.0


class DatabaseTimeout(psycopg.OperationalError):
    """The server did not answer within the deadline; the connection is closed."""


class DeadlineConnection(psycopg.Connection):  # type: ignore[type-arg]
    """A psycopg connection whose every wait for the server ends after
    ``deadline`` seconds (None: no deadline)."""

    deadline: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        try:
            result = super().wait(gen, interval=interval, timeout=self.deadline if timeout is None else timeout)
        except _WaitTimeout:
            self.close()
            error = DatabaseTimeout(f"the database did not answer within {self.deadline:g} s")
            outage.trip(error)
            raise error from None
        except psycopg.OperationalError as exc:
            if self.broken:
                outage.trip(exc)  # the server went away under the query
            raise
        outage.answered()
        return result


class _Driver:
    """The driver as Django's backend sees it (``self.Database``): psycopg,
    except that ``connect`` makes a :class:`DeadlineConnection`."""

    connect = staticmethod(DeadlineConnection.connect)

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)


class DatabaseWrapper(base.DatabaseWrapper):
    Database = _Driver()  # type: ignore[assignment]

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        statement = float(params.pop("statement_timeout", 0) or 0)
        if params.get("connect_timeout") is not None:
            # libpq's convention: whole seconds, at least 2.
            params["connect_timeout"] = max(2, round(float(params["connect_timeout"])))
        if statement > 0:
            setting = f"-c statement_timeout={round(statement * 1000)}"
            params["options"] = f"{params['options']} {setting}" if params.get("options") else setting
        self.deadline = statement + DEADLINE_MARGIN if statement > 0 else None
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if not outage.allow():
            raise psycopg.OperationalError(f"not trying again yet after {outage.cause}")
        try:
            connection = super().get_new_connection(conn_params)
        except psycopg.OperationalError as exc:
            outage.trip(exc)
            raise
        connection.deadline = self.deadline
        outage.answered()
        return connection
