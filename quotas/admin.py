"""Admin for plans, accounts and keys.

A key is created from the admin like anywhere else (``api_key_issue``) and its
full value is shown once, on the page that answers the form (never cached),
and nowhere else: not in a message, which Django keeps in a signed but
readable cookie, nor in the session. Usage today and this
month is read from the counters in one round trip per page; with Redis
unreachable the columns say so and the page still renders.
"""

from __future__ import annotations

import csv
import datetime as dt
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from redis.exceptions import RedisError

from quotas.backends import get_backend
from quotas.history import BillingRow, month_start, parse_month, usage_export, usage_history
from quotas.ledger import account_usage as ledger_usage
from quotas.models import Account, ApiKey, Plan
from quotas.services import api_key_issue, api_key_revoke

# The account page's chart: the last CHART_DAYS UTC days of the ledger.
CHART_DAYS = 30


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
    readonly_fields = ("usage_chart",)
    actions = ["export_usage_csv"]

    def get_urls(self) -> list[URLPattern]:
        export = path(
            "usage-export/", self.admin_site.admin_view(self.usage_export_view), name="quotas_account_usage_export"
        )
        return [export, *super().get_urls()]

    def usage_export_view(self, request: HttpRequest) -> HttpResponse:
        """The ledger of one UTC month (``?month=YYYY-MM``, default this one)
        as CSV, for every account or one (``?account=<id>``)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            month = parse_month(request.GET["month"]) if "month" in request.GET else _this_month()
            account = int(request.GET["account"]) if "account" in request.GET else None
        except ValueError:
            return HttpResponse("month must be YYYY-MM and account an id.", status=400, content_type="text/plain")
        return _csv(month, None if account is None else [account])

    @admin.action(description="Export this month's usage of the selected accounts (CSV)")
    def export_usage_csv(self, request: HttpRequest, queryset: QuerySet[Account]) -> HttpResponse:
        return _csv(_this_month(), list(queryset.values_list("pk", flat=True)))

    @admin.display(description=f"usage, last {CHART_DAYS} days (UTC)")
    def usage_chart(self, account: Account) -> SafeString | str:
        """Units per day from the ledger as bars (their title: the day, its
        requests and units), and CSV links for billing."""
        if account.pk is None:
            return "-"
        today = dt.datetime.now(tz=dt.UTC).date()
        days = usage_history(account_id=account.pk, since=today - dt.timedelta(days=CHART_DAYS - 1), until=today)
        top = max((day.units for day in days), default=0) or 1
        bars = format_html_join(
            "",
            '<rect x="{}" y="{}" width="8" height="{}" fill="#79aec8"><title>{}: {} requests, {} units</title></rect>',
            (
                (index * 10, 60 - height, height, day.start.isoformat(), day.requests, day.units)
                for index, day in enumerate(days)
                for height in [max(0, round(56 * day.units / top))]
            ),
        )
        url = reverse("admin:quotas_account_usage_export")
        this_month = _this_month()
        last_month = month_start(this_month - dt.timedelta(days=1))
        return format_html(
            '<svg class="usage-chart" role="img" aria-label="units per day" width="{}" height="62" '
            'viewBox="0 0 {} 62">{}<line x1="0" y1="61" x2="{}" y2="61" stroke="#999"/></svg>'
            "<p>{} requests, {} units in {} days (peak {} units a day). CSV: "
            '<a href="{}?account={}&amp;month={}">{}</a>, <a href="{}?account={}&amp;month={}">{}</a></p>',
            CHART_DAYS * 10,
            CHART_DAYS * 10,
            bars,
            CHART_DAYS * 10,
            sum(day.requests for day in days),
            sum(day.units for day in days),
            CHART_DAYS,
            max((day.units for day in days), default=0),
            url,
            account.pk,
            this_month.strftime("%Y-%m"),
            this_month.strftime("%Y-%m"),
            url,
            account.pk,
            last_month.strftime("%Y-%m"),
            last_month.strftime("%Y-%m"),
        )

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        accounts = list(changelist.result_list)
        try:
            usage = get_backend().usage([account.pk for account in accounts])
        except (RedisError, OSError):
            usage = {}
            messages.warning(request, "Redis is unreachable: usage is not shown.")
        # A window the plan has no quota on is not counted in Redis: the
        # ledger (flushed by the worker about every second) has its units.
        today = dt.datetime.now(tz=dt.UTC).date()
        ids = [account.pk for account in accounts]
        ledger = {
            "day": ledger_usage(account_ids=ids, since=today, until=today),
            "month": ledger_usage(account_ids=ids, since=month_start(today), until=today),
        }
        for account in accounts:
            account._usage = usage.get(account.pk)  # type: ignore[attr-defined]
            account._ledger = {window: units.get(account.pk, 0) for window, units in ledger.items()}  # type: ignore[attr-defined]
        return changelist

    def _usage(self, account: Account, window: str) -> str:
        quota = _quota_of(account.plan, window)
        if not quota:
            # The limiter counts a window only for a plan with a quota on it
            # (Redis would say a false 0): the ledger's figure instead.
            units = (getattr(account, "_ledger", None) or {}).get(window)
            return "-" if units is None else f"{units} (ledger, no quota)"
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


def _this_month() -> dt.date:
    return month_start(dt.datetime.now(tz=dt.UTC).date())


def _csv(month: dt.date, account_ids: list[int] | None) -> HttpResponse:
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="usage-{month:%Y-%m}.csv"'
    writer = csv.writer(response)
    writer.writerow(BillingRow.FIELDS)
    for row in usage_export(month=month, account_ids=account_ids):
        writer.writerow(row.values())
    return response
