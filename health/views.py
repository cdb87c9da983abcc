"""Health endpoints.

- ``/health`` and ``/health/ready``: 200 when the database and Redis
  (counters and queue) answer, 503 otherwise; within about a second even when
  either hangs. ``"status": "degraded"`` (still 200: restarting the web tier
  does not bring a worker back) while jobs wait and no worker is alive.
- ``/health/live``: the process answers; no dependency is touched.
- ``/admin/health/redis``: the same plus each Redis role's facts (how it is
  reached, the server's version, memory, clients...), for a staff session or
  ``Authorization: Bearer <HEALTH_TOKEN>``.

Both report the counters' Redis (``redis``) and the queue's (``queue``) apart,
with the topology each is reached through (``url``, ``sentinel``, ``cluster``).
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

import project
from health.checks import (
    Check,
    CounterBackendCheck,
    DatabaseCheck,
    QueueCheck,
    QueueServerCheck,
    RedisServerCheck,
    WorkersCheck,
    role_facts,
    run_checks,
)
from project.api import json_response
from project.errors import error_response
from project.redis import queue_is_split
from quotas.ledger import ledger_status


def _status(results: dict[str, dict[str, Any]]) -> str:
    return "healthy" if all(result["status"] == "connected" for result in results.values()) else "unhealthy"


def _public_report() -> tuple[dict[str, Any], int]:
    # The database probe starts first and runs while Redis is checked.
    checks: list[Check] = [DatabaseCheck(), CounterBackendCheck(), QueueCheck()]
    if not settings.DEMO_MODE:  # DEMO_MODE runs jobs on a thread of the web process
        checks.append(WorkersCheck())
    results = run_checks(checks)
    required = {name: results[name] for name in ("database", "counter_backend", "queue_service")}
    status = _status(required)
    database = _without_error(results["database"])
    queue = _without_error(results["queue_service"])
    warnings = []
    workers = results.get("workers")
    if workers is not None and workers["status"] == "connected":
        waiting = max(database.pop("jobs_waiting", None) or 0, workers["rq_queued"])
        queue.update(jobs_waiting=waiting, live_workers=workers["live"], lost_workers=workers["lost"])
        if waiting and not workers["live"]:
            lost = f" ({workers['lost']} lost: no heartbeat within its bound)" if workers["lost"] else ""
            warnings.append(
                {
                    "code": "no_live_worker",
                    "message": f"{waiting} job(s) wait and no worker is alive{lost}.",
                }
            )
            if status == "healthy":
                status = "degraded"
    database.pop("jobs_waiting", None)
    body: dict[str, Any] = {
        "status": status,
        "version": project.__version__,
        "environment": settings.ENVIRONMENT,
        "database": database,
        "redis": _without_error(results["counter_backend"]),
        "queue": queue,
        "warnings": warnings,
    }
    if not settings.DEMO_MODE:
        # The topology only: addresses are for the authenticated report.
        body["redis"]["topology"] = role_facts("counters")["topology"]
        facts = role_facts("queue")
        body["queue"].update(topology=facts["topology"], shared_with_counters=facts["shared_with_counters"])
    return body, 503 if status == "unhealthy" else 200


def _without_error(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "error"}


def _report_response(body: dict[str, Any], status: int) -> HttpResponse:
    response = json_response(body, status=status)
    # A 503 here is the report doing its job; probes poll it every few
    # seconds, so django.request must not log each one as an error.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


@never_cache
@require_GET
def health(request: HttpRequest) -> HttpResponse:
    body, status = _public_report()
    return _report_response(body, status)


@never_cache
@require_GET
def live(request: HttpRequest) -> HttpResponse:
    return json_response({"status": "alive", "version": project.__version__})


def _bearer_token_ok(request: HttpRequest) -> bool:
    token = settings.HEALTH_TOKEN
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def redis_report(request: HttpRequest) -> HttpResponse:
    """Staff or HEALTH_TOKEN only: a browser is sent to the admin login, an API
    client gets 401, a signed-in non-staff user 403."""
    user = request.user
    if not (_bearer_token_ok(request) or (user.is_active and user.is_staff)):
        if user.is_authenticated:
            return error_response(403, "permission_denied", "Staff only.")
        if "text/html" in request.META.get("HTTP_ACCEPT", "") and "HTTP_AUTHORIZATION" not in request.META:
            return redirect_to_login(request.get_full_path(), login_url=reverse("admin:login"))
        return error_response(
            401,
            "authentication_required",
            "Sign in as staff or send 'Authorization: Bearer <HEALTH_TOKEN>'.",
            headers={"WWW-Authenticate": 'Bearer realm="tollgate-health"'},
        )
    split = not settings.DEMO_MODE and queue_is_split(settings)
    checks: list[Check] = [CounterBackendCheck(), QueueCheck()]
    if not settings.DEMO_MODE:
        checks.append(RedisServerCheck())
    if split:
        checks.append(QueueServerCheck())
    results = run_checks(checks)
    servers = ("redis_server", "queue_redis_server")
    body: dict[str, Any] = {
        "status": _status({k: v for k, v in results.items() if k not in servers}),
        "demo_mode": settings.DEMO_MODE,
        "environment": settings.ENVIRONMENT,
        "counter_backend": results["counter_backend"],
        "queue_service": results["queue_service"],
    }
    if not settings.DEMO_MODE:
        body["redis"] = {"role": "counters", **role_facts("counters"), **results["redis_server"]}
        queue = role_facts("queue")
        body["queue_redis"] = {"role": "queue", **queue, **(results["queue_redis_server"] if split else {})}
    # The usage ledger: when Redis last lost its data (counters restored from
    # the ledger since), and the last flush.
    try:
        body.update(ledger_status().as_json())
    except DatabaseError:
        body.update(counters_restored_at=None, last_flush_at=None, ledger_error="database unavailable")
    return _report_response(body, 200 if body["status"] == "healthy" else 503)
