"""The operations page in the admin, built the way django-rq builds its
dashboard: the table-less ``Operations`` model gives the admin index row and
the permission, and ``get_urls`` serves our own views, each wrapped in
``admin_site.admin_view`` (staff session, login redirect, never cached).
There is no change list, form or object: only the views below."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from health import operations_views
from health.models import Operations


@admin.register(Operations)
class OperationsAdmin(admin.ModelAdmin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(operations_views.PERMISSION)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(operations_views.PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        site = self.admin_site

        def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            @wraps(view)
            def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                request.current_app = site.name
                return view(request, *args, **kwargs)

            return site.admin_view(wrapper)

        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            # The name the admin index links to.
            path("", wrap(lambda request: operations_views.page(request, site)), name=f"{name}_changelist"),
            path("data.json", wrap(operations_views.data), name=f"{name}_data"),
            path(
                "jobs/<str:job_id>/<slug:action>/",
                wrap(lambda request, job_id, action: operations_views.job_action(request, site, job_id, action)),
                name=f"{name}_job",
            ),
        ]
