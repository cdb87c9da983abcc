"""Deploy checks of the counters' Redis: what it keeps.

The usage ledger bounds what a Redis losing its data takes with it to the
last ``USAGE_FLUSH_INTERVAL``, and restores every account's counters; but a
Redis that keeps nothing on disk loses that second on every restart, and one
that evicts keys under memory pressure drops accounts' counters (restored, at
the price of a database read each) and their usage not yet flushed. Both are
warnings: Tollgate stays correct, only less durable. An unreachable Redis is
``project.E003``'s concern, not these checks'.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register

from project.redis import counters_role
from quotas.backends import get_backend
from quotas.outage import REDIS_DOWN

W001 = "Redis keeps the counters in memory only (neither AOF nor RDB persistence is on)."
W002 = "Redis may evict keys under memory pressure (maxmemory-policy is {policy!r}, not 'noeviction')."


@register(Tags.caches, deploy=True)
def check_redis_durability(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    # REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES; a missing or
    # malformed one is project.E001/E002's concern.
    if settings.DEMO_MODE or counters_role(settings).problem:
        return []
    backend = get_backend()
    durability = getattr(backend, "durability", None)
    if durability is None:
        return []
    try:
        facts = durability()
    except REDIS_DOWN:
        return []
    warnings = []
    if not facts["aof"] and facts["rdb"] is False:
        warnings.append(
            Warning(
                W001,
                hint="Turn on AOF (appendonly yes, appendfsync everysec): a restart then loses at most "
                "a second, else the usage not yet flushed to the ledger (USAGE_FLUSH_INTERVAL) is lost.",
                id="quotas.W001",
            )
        )
    policy = facts["maxmemory_policy"]
    if policy and policy != "noeviction":
        warnings.append(
            Warning(
                W002.format(policy=policy),
                hint="Set maxmemory-policy noeviction (Heroku Key-Value Store and Render Key Value let you choose it).",
                id="quotas.W002",
            )
        )
    return warnings
