"""Services for plans, accounts and keys, called by the admin, the management
commands and the tests. Keyword-only and typed; each raises ValidationError
with a message fit for the person who asked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from quotas import keys
from quotas.models import MB, Account, ApiKey, Plan
from quotas.policy import format_limits, parse_quotas, parse_rates


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: ``key`` is the only time the secret is seen."""

    key: str
    api_key: ApiKey


def plan_set(
    *,
    name: str,
    rate_limits: list[str] | None = None,
    quotas: list[str] | None = None,
    max_upload_mb: int | None = None,
    max_sync_instances: int | None = None,
    max_sync_body_kb: int | None = None,
) -> tuple[Plan, bool]:
    """Create the plan ``name`` or update the fields given (lists given
    replace the old lists). Returns ``(plan, created)``."""
    plan = Plan.objects.filter(name=name).first()
    created = plan is None
    if plan is None:
        plan = Plan(name=name)
    if rate_limits is not None:
        plan.rate_limits = format_limits(parse_rates(",".join(rate_limits)))
    if quotas is not None:
        plan.quotas = format_limits(parse_quotas(",".join(quotas)))
    if max_upload_mb is not None:
        if max_upload_mb < 1:
            raise ValidationError("--max-upload-mb must be at least 1.")
        plan.max_upload_bytes = max_upload_mb * MB
    if max_sync_instances is not None:
        if max_sync_instances < 1:
            raise ValidationError("--max-sync-instances must be at least 1.")
        plan.max_sync_instances = max_sync_instances
    if max_sync_body_kb is not None:
        if max_sync_body_kb < 1:
            raise ValidationError("--max-sync-body-kb must be at least 1.")
        plan.max_sync_body_bytes = max_sync_body_kb * 1024
    plan.full_clean()
    plan.save()
    return plan, created


def account_create(*, name: str, plan_name: str) -> Account:
    plan = Plan.objects.filter(name=plan_name).first()
    if plan is None:
        known = ", ".join(Plan.objects.values_list("name", flat=True)) or "none yet; create one with set_plan"
        raise ValidationError(f"No plan named {plan_name!r} (plans: {known}).")
    if Account.objects.filter(name=name).exists():
        raise ValidationError(f"An account named {name!r} already exists.")
    account = Account(name=name, plan=plan)
    account.full_clean()
    account.save()
    return account


def api_key_issue(*, api_key: ApiKey) -> IssuedKey:
    """Give the unsaved ``api_key`` a new secret and save it. The full key is
    in the result and nowhere else."""
    while True:
        full_key, parsed = keys.generate()
        if not ApiKey.objects.filter(prefix=parsed.prefix).exists():
            break
    api_key.prefix = parsed.prefix
    api_key.secret_hash = keys.hash_secret(parsed.secret)
    api_key.save()
    return IssuedKey(full_key, api_key)


def api_key_create(*, account: Account, label: str = "", expires_at: datetime | None = None) -> IssuedKey:
    """A new key for ``account`` (see :func:`api_key_issue`)."""
    return api_key_issue(api_key=ApiKey(account=account, label=label, expires_at=expires_at))


@transaction.atomic
def api_key_revoke(*, prefix: str) -> ApiKey:
    """Revoke the key with this prefix (idempotent). Every process refuses it
    from its next request on."""
    api_key = ApiKey.objects.select_for_update().filter(prefix=prefix).first()
    if api_key is None:
        raise ValidationError(f"No API key with prefix {prefix!r}.")
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key
