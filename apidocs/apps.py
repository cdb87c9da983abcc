from django.apps import AppConfig


class ApiDocsConfig(AppConfig):
    name = "apidocs"
    verbose_name = "API documentation"
