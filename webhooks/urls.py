from django.urls import path

from webhooks import views

urlpatterns = [
    path("webhooks", views.endpoints, name="webhooks-endpoints"),
    path("webhooks/<str:endpoint_id>", views.endpoint_detail, name="webhooks-endpoint"),
]
