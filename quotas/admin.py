"""Admin for plans, accounts and keys.

A key is created from the admin like anywhere else (``api_key_issue``) and its
full value is shown once, on the page that answers the form (never cached),
and nowhere else: not in a message, which Django keeps in a signed but
readable cookie, nor in the session. Usage today and this
month is read from the counters in one round trip per page; with Redis
unreachable the columns say so and the page still renders.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
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
        quota = _quota_of(account.plan, window)
        if not quota:
            # The limiter counts a window only for a plan with a quota on it:
            # a count here would be a false 0, whatever was used.
            return f"not counted (no {'daily' if window == 'day' else 'monthly'} quota)"
        used = (getattr(account, "_usage", None) or {}).get(window)
        return "-" if used is None else f"{used} / {quota}"

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
        # Kept on this request only, for response_add to show.
        request.issued_key = api_key_issue(api_key=obj).key  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        """The new key, on this response (a page, not a redirect): once, here."""
        key = getattr(request, "issued_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "New API key",
            "api_key": obj,
            "key": key,
        }
        response = TemplateResponse(request, "admin/quotas/apikey/issued.html", context)
        add_never_cache_headers(response)  # no-store: no cache or back button keeps the key
        return response

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(prefix=api_key.prefix)
            count += 1
        messages.success(request, f"Revoked {count} key(s); they are refused from the next request on.")
