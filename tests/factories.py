"""factory_boy factories for plans, accounts and keys."""

from __future__ import annotations

import factory

from quotas.models import Account, Plan
from quotas.services import IssuedKey, api_key_create


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"plan-{n}")
    rate_limits = "100/m"
    quotas = "10000/day, 100000/month"


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    name = factory.Sequence(lambda n: f"account-{n}")
    plan = factory.SubFactory(PlanFactory)


def issue_key(account: Account | None = None, **plan_fields: object) -> IssuedKey:
    """A new key (full key in ``.key``) for ``account``, or for a new account
    on a new plan built from ``plan_fields``."""
    if account is None:
        account = AccountFactory(plan=PlanFactory(**plan_fields))
    return api_key_create(account=account, label="test")
