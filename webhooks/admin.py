"""Webhook endpoints in the admin: each with its recent deliveries, and a
resend action for operators."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from webhooks.models import Delivery, Endpoint
from webhooks.services import delivery_resend
from webhooks.signing import secret_new

RECENT = 20


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ("url", "account", "events", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("url", "account__name")
    readonly_fields = ("id", "created_at", "recent_deliveries")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fields = ("id", "account", "url", "events", "active", "created_at", "recent_deliveries")

    @admin.display(description=f"Recent deliveries (latest {RECENT})")
    def recent_deliveries(self, obj: Endpoint) -> str:
        if obj.pk is None:
            return "-"
        rows = obj.deliveries.order_by("-created_at", "-id")[:RECENT]
        body = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:webhooks_delivery_change", args=[row.pk]),
                    row.event_id,
                    row.event,
                    row.status,
                    row.attempts,
                    row.response_status or "-",
                    row.last_error or "",
                )
                for row in rows
            ),
        )
        head = mark_safe(
            "<table><tr><th>event id</th><th>event</th><th>status</th><th>attempts</th>"
            "<th>last answer</th><th>last error</th></tr>"
        )
        return head + body + mark_safe("</table>")

    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        if not obj.secret:
            obj.secret = secret_new()
        super().save_model(request, obj, form, change)

    def get_readonly_fields(self, request: HttpRequest, obj: Endpoint | None = None) -> Any:
        # The signing secret, for an operator who sets up an endpoint for a
        # client, on the page itself (never in a message, which a cookie carries).
        return (*self.readonly_fields, "signing_secret") if obj is not None else self.readonly_fields

    def get_fields(self, request: HttpRequest, obj: Endpoint | None = None) -> Any:
        return (*self.fields, "signing_secret") if obj is not None else self.fields

    @admin.display(description="Signing secret")
    def signing_secret(self, obj: Endpoint) -> str:
        return obj.secret


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "event_id", "endpoint", "status", "attempts", "response_status", "created_at")
    list_filter = ("status", "event")
    search_fields = ("event_id", "endpoint__url")
    readonly_fields = [field.name for field in Delivery._meta.fields]
    actions = ["resend"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Resend the selected deliveries now", permissions=["change"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        for delivery in queryset:
            delivery_resend(delivery=delivery)
        self.message_user(request, f"{len(queryset)} delivery(ies) will be sent again.", messages.SUCCESS)
