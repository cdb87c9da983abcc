"""Read-only admin pages for registered schemas and batch jobs.

Operators look here; they do not edit: schema versions are immutable, and a
job row is written only by its upload, its run and recovery (the actions on
failed jobs are on the operations page, ``validation.failed_jobs``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from validation.models import Schema, ValidationJob


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Schema)
class SchemaAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "account", "draft", "created_at")
    list_filter = ("draft",)
    search_fields = ("name", "account__name")
    list_select_related = ("account",)


@admin.register(ValidationJob)
class ValidationJobAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "account",
        "schema",
        "format",
        "status",
        "processed",
        "total",
        "invalid_count",
        "attempts",
        "recoveries",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "format")
    search_fields = ("id", "account__name", "schema__name")
    list_select_related = ("account", "schema")
    date_hierarchy = "created_at"
