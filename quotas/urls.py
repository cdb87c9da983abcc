from django.urls import path

from quotas import views

urlpatterns = [
    path("ping", views.ping, name="api-ping"),
    path("usage", views.usage, name="api-usage"),
    path("usage/history", views.usage_history_view, name="api-usage-history"),
]
