from django.urls import path

from health import views
from health.metrics import metrics_view

urlpatterns = [
    path("health", views.health, name="health"),
    path("health/live", views.live, name="health-live"),
    path("health/ready", views.health, name="health-ready"),
    path("metrics", metrics_view, name="metrics"),
]
