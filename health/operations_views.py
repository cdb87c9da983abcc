"""Views of the operations page, wrapped by ``health.admin.OperationsAdmin``
in ``admin_site.admin_view`` (staff session, CSRF, never cached).

- the page: the snapshot rendered in the admin's layout; it refreshes itself
  from ``data.json`` every ``OPERATIONS_REFRESH_SECONDS`` without reloading;
- ``data.json``: the same snapshot as JSON data, plus the page's body rendered
  by the same template (``html``), which the page swaps in: one renderer, with
  Django's autoescaping, for the first paint and every refresh;
- ``jobs/<id>/retry/`` and ``jobs/<id>/discard/``: a confirmation page (GET)
  and the action (POST, superusers only), ending with a message.

Seeing the page needs ``health.view_operations`` (superusers have it).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse

from health import failed_jobs
from health.operations import Snapshot, take_snapshot
from project.api import json_response

PERMISSION = "health.view_operations"
BODY_TEMPLATE = "health/operations/body.html"


def refresh_seconds() -> float:
    """How often the page refreshes itself (read per request)."""
    return float(getattr(settings, "OPERATIONS_REFRESH_SECONDS", 3))


def _require_view(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied("You may not see the operations page.")


def _context(request: HttpRequest, snapshot: Snapshot) -> dict[str, Any]:
    return {
        "snapshot": snapshot,
        "can_act": request.user.is_superuser,
        "refresh_seconds": refresh_seconds(),
    }


def page(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    _require_view(request)
    snapshot = take_snapshot()
    context = {
        **site.each_context(request),
        **_context(request, snapshot),
        "title": "Operations",
        "chart": chart_data(snapshot),
    }
    return TemplateResponse(request, "health/operations.html", context)


def chart_data(snapshot: Snapshot) -> dict[str, Any]:
    return {"per_minute": snapshot.per_minute}


def data(request: HttpRequest) -> HttpResponse:
    """The snapshot as JSON (see :func:`snapshot_json`) with ``html``."""
    _require_view(request)
    snapshot = take_snapshot()
    body = snapshot_json(snapshot)
    body["refresh_seconds"] = refresh_seconds()
    body["html"] = render_to_string(BODY_TEMPLATE, _context(request, snapshot), request=request)
    return json_response(body, headers={"Cache-Control": "no-store"})


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    """Plain data: what the page shows, for scripts and the page itself
    (orjson turns the dataclasses into objects, datetimes into ISO 8601)."""
    rq = snapshot.rq
    return {
        "generated_at": snapshot.generated_at.isoformat(),
        "environment": snapshot.environment,
        "demo_mode": snapshot.demo_mode,
        "redis_unreachable": snapshot.redis_unreachable,
        "queue_redis_unreachable": snapshot.queue_redis_unreachable,
        "redis": snapshot.redis,
        "queues": rq.queues if rq else None,
        "workers": rq.workers if rq else None,
        "no_worker_while_jobs_wait": snapshot.no_worker_while_jobs_wait,
        "jobs_waiting": snapshot.waiting,
        "oldest_queued_age": snapshot.oldest_queued_age,
        "live_workers": rq.alive_workers if rq else None,
        "lost_workers": rq.lost_workers if rq else None,
        "queues_error": snapshot.rq_error,
        "accounts": snapshot.accounts,
        "total_accounts": snapshot.total_accounts,
        "usage_error": snapshot.usage_error,
        "top_keys": snapshot.top_keys,
        "per_minute": snapshot.per_minute,
        "jobs": snapshot.jobs,
    }


ACTIONS = {
    "retry": ("Retry", "retried: it is queued again"),
    "discard": ("Discard", "discarded: its upload is deleted and it cannot be retried"),
}


def job_action(request: HttpRequest, site: admin.AdminSite, job_id: str, action: str) -> HttpResponse:
    """GET: ask for confirmation. POST (CSRF-checked by the admin): do it."""
    _require_view(request)
    if not request.user.is_superuser:
        raise PermissionDenied("Only superusers may retry or discard jobs.")
    if action not in ACTIONS:
        raise Http404("No such action.")
    back = reverse("admin:health_operations_changelist", current_app=site.name)
    job = failed_jobs.find_failed(job_id)
    if job is None:
        messages.warning(request, f"Job {job_id} is not a failed job that can be retried; nothing was done.")
        return HttpResponseRedirect(back)
    verb, outcome = ACTIONS[action]
    if request.method == "POST":
        try:
            failed_jobs.act(action, job_id)
        except failed_jobs.NotRetryable as exc:
            messages.warning(request, f"Job {job_id}: {exc}")
        else:
            messages.success(request, f"Job {job_id} {outcome}.")
        return HttpResponseRedirect(back)
    context = {
        **site.each_context(request),
        "title": f"{verb} job {job_id}?",
        "job": job,
        "action": action,
        "verb": verb,
        "back": back,
    }
    return TemplateResponse(request, "health/operations/confirm.html", context)
