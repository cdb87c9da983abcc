"""Admin for plans, accounts and keys.

A key is created from the admin like anywhere else (``api_key_issue``) and its
full value is shown once, in the confirmation message. Usage today and this
month is read from the counters in one round trip per page; with Redis
unreachable the columns say so and the page still renders.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from redis.exceptions import RedisError

from quotas.backends import get_backend
from quotas.models import Account, ApiKey, Plan
from quotas.services import api_key_issue, api_key_revoke


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "rate_limits", "quotas", "max_upload_mb", "max_sync_instances", "account_count")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Plan]:
        return super().get_queryset(request).annotate(_accounts=Count("accounts"))

    @admin.display(description="max upload (MB)")
    def max_upload_mb(self, plan: Plan) -> int:
        return plan.max_upload_bytes // (1024 * 1024)

    @admin.display(description="accounts", ordering="_accounts")
    def account_count(self, plan: Plan) -> int:
        return plan._accounts  # type: ignore[attr-defined]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ("prefix", "label", "created_at", "last_used_at", "revoked_at", "expires_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are issued from the API key page, which shows the secret once


def _quota_of(plan: Plan, window: str) -> int | None:
    return next((quota.count for quota in plan.quota_list if quota.window == window), None)


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("name", "plan", "is_active", "usage_today", "usage_this_month", "created_at")
    list_filter = ("is_active", "plan")
    list_select_related = ("plan",)
    search_fields = ("name",)
    inlines = [ApiKeyInline]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        accounts = list(changelist.result_list)
        try:
            usage = get_backend().usage([account.pk for account in accounts])
        except (RedisError, OSError):
            usage = {}
            messages.warning(request, "Redis is unreachable: usage is not shown.")
        for account in accounts:
            account._usage = usage.get(account.pk)  # type: ignore[attr-defined]
        return changelist

    def _usage(self, account: Account, window: str) -> str:
        used = (getattr(account, "_usage", None) or {}).get(window)
        if used is None:
            return "-"
        quota = _quota_of(account.plan, window)
        return f"{used} / {quota}" if quota else str(used)

    @admin.display(description="used today (UTC)")
    def usage_today(self, account: Account) -> str:
        return self._usage(account, "day")

    @admin.display(description="used this month (UTC)")
    def usage_this_month(self, account: Account) -> str:
        return self._usage(account, "month")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("__str__", "account", "label", "created_at", "last_used_at", "revoked_at", "expires_at")
    list_filter = ("revoked_at", "account__plan")
    list_select_related = ("account",)
    search_fields = ("prefix", "label", "account__name")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:  # type: ignore[override]
        if obj is None:
            return ["account", "label", "expires_at"]
        return ["account", "prefix", "label", "created_at", "last_used_at", "revoked_at", "expires_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        return self.readonly_fields + (("account",) if obj is not None else ())

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_key_issue(api_key=obj)
        messages.warning(
            request,
            f"New API key for {obj.account}: {issued.key} (copy it now; it is not stored and will not be shown again).",
        )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(prefix=api_key.prefix)
            count += 1
        messages.success(request, f"Revoked {count} key(s); they are refused from the next request on.")
