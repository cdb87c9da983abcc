"""django-rq's dashboard (``/admin/django-rq/``) behind a permission.

django-rq guards its views with ``staff_member_required`` alone, and they can
empty queues and delete, requeue, enqueue or stop jobs: any staff user could.
Every one of its views, the POST actions included, is served here behind
:func:`queue_admin_required`: a staff session with ``health.manage_queues``
("Can manage queues"; superusers have every permission). Without a session
the admin's login page is shown; a staff user without the permission gets
403. The statistics JSON and metrics views keep django-rq's own token
(``RQ_API_TOKEN``) for callers without a session.

The URL names and namespace are django-rq's own (``django_rq:…``), which its
templates reverse.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

PERMISSION = "health.manage_queues"

View = Callable[..., HttpResponse]


def queue_admin_required(view: View) -> View:
    """Staff with ``health.manage_queues``, or 403."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied("Managing queues needs the 'Can manage queues' permission.")
        return view(request, *args, **kwargs)

    return staff_member_required(wrapper)


def token_or_queue_admin(view: View) -> View:
    """django-rq's token views: a staff user needs the permission too (the
    view itself lets any staff user in); a caller without a session is left
    to the view's own token check."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if user.is_authenticated and not user.has_perm(PERMISSION):
            raise PermissionDenied("Queue statistics need the 'Can manage queues' permission.")
        return view(request, *args, **kwargs)

    return wrapper


def _wrap_api() -> list[Any]:
    patterns = get_api_urlpatterns()
    for pattern in patterns:  # django-rq offers no wrapper for these: wrap them in place
        pattern.callback = token_or_queue_admin(pattern.callback)
    return patterns


app_name = "django_rq"
urlpatterns = _wrap_api() + get_admin_urlpatterns(view_wrapper=queue_admin_required)
