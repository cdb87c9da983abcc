from django.contrib import admin
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.defaults import bad_request, page_not_found, server_error

from apidocs import views as apidocs_views
from health import views as health_views
from project.errors import error_response

urlpatterns = [
    path("", include("health.urls")),
    # Before the admin's own URLs, which would read "health" as an app label.
    path("admin/health/redis", health_views.redis_report, name="admin-health-redis"),
    # django-rq's dashboard, every view behind "Can manage queues".
    path("admin/django-rq/", include("health.rq_dashboard")),
    path("admin/", admin.site.urls),
    path("api/v1/openapi.json", apidocs_views.openapi_json, name="api-openapi"),
    path("api/docs/", apidocs_views.docs, name="api-docs"),
    path("api/v1/", include("quotas.urls")),
    path("api/v1/", include("validation.urls")),
    path("api/v1/", include("webhooks.urls")),
]


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return error_response(404, "not_found", "No such endpoint or object.")
    return page_not_found(request, exception)  # type: ignore[arg-type]


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 for a suspicious request (a ``Host`` not in
    ``ALLOWED_HOSTS``, too many fields...), in the API's error shape."""
    if request.path.startswith("/api/"):
        message = "The request is invalid."
        if isinstance(exception, DisallowedHost):
            message = "The Host header names a host this service does not serve."
        return error_response(400, "bad_request", message)
    return bad_request(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    """Django logs the error with its traceback (and mails ADMINS) after
    this answer is built: the body's claim holds."""
    if request.path.startswith("/api/"):
        return error_response(
            500, "internal_error", "An unexpected error occurred; it has been logged.", deliberate=False
        )
    return server_error(request)
