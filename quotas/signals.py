"""Invalidate cached key records when keys, accounts or plans change.

Whatever the path (admin, management command, shell), a saved change deletes
the generation of the affected accounts in Redis once the transaction
commits; every process then reloads those records on their next request.
A bulk ``QuerySet.update()`` sends no signal: such a change is picked up
within ``quotas.authentication.RECORD_MAX_AGE``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from redis.exceptions import RedisError

from quotas.backends import get_backend
from quotas.meter import process_meter
from quotas.models import Account, ApiKey, Plan

log = logging.getLogger("tollgate.quotas")

_CHUNK = 1000


def invalidate_accounts(account_ids: list[int]) -> None:
    """After the current transaction commits, make every process reload
    these accounts. A Redis failure is logged, not raised: the change is
    committed and takes effect within RECORD_MAX_AGE anyway."""

    def publish() -> None:
        process_meter().forget(set(account_ids))
        try:
            for start in range(0, len(account_ids), _CHUNK):
                get_backend().invalidate(account_ids[start : start + _CHUNK])
        except RedisError as exc:
            log.warning("Could not invalidate %d account(s) in Redis: %s", len(account_ids), type(exc).__name__)

    if account_ids:
        transaction.on_commit(publish)


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def _api_key_changed(sender: Any, instance: ApiKey, created: bool = False, **kwargs: Any) -> None:
    if not created:  # a new key is in no cache yet
        invalidate_accounts([instance.account_id])


@receiver(post_save, sender=Account)
@receiver(post_delete, sender=Account)
def _account_changed(sender: Any, instance: Account, created: bool = False, **kwargs: Any) -> None:
    if not created:
        invalidate_accounts([instance.pk])


@receiver(post_save, sender=Plan)
def _plan_changed(sender: Any, instance: Plan, created: bool = False, **kwargs: Any) -> None:
    if not created:
        invalidate_accounts(list(instance.accounts.values_list("pk", flat=True)))
