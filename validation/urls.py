from django.urls import path

from validation import views

urlpatterns = [
    path("schemas", views.schemas, name="validation-schemas"),
    path("schemas/bundle", views.schemas_bundle, name="validation-schemas-bundle"),
    path("schemas/<str:name>/<str:version>", views.schema_detail, name="validation-schema"),
    path("validate", views.validate, name="validation-validate"),
    path("jobs", views.jobs, name="validation-jobs"),
    path("jobs/<str:job_id>", views.job_detail, name="validation-job"),
    path("jobs/<str:job_id>/errors", views.job_errors, name="validation-job-errors"),
]
