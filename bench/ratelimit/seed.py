"""Set up the bench's throwaway database with the project's own management
commands: ``migrate``, ``set_plan``, ``create_account``, ``create_api_key --json``.

Run by ``run.py`` as ``python -m bench.ratelimit.seed`` with the bench's
``DATABASE_URL``; prints one JSON line ``{"throughput_key": ..., "burst_key":
..., "many_keys": [...]}``, the many keys ordered so that consecutive ones
belong to different accounts.
"""

from __future__ import annotations

import io
import json
import os

from bench.ratelimit.plans import BURST_PLAN, MANY_ACCOUNTS, MANY_KEYS, THROUGHPUT_PLAN


def _command(*args: str) -> str:
    from django.core.management import call_command

    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _key(account: str) -> str:
    return str(json.loads(_command("create_api_key", account, "--label", "bench", "--json").splitlines()[-1])["key"])


def seed(many: int = MANY_KEYS, many_accounts: int = MANY_ACCOUNTS) -> dict[str, object]:
    """Create both plans, an account on each with one key, and the many-keys
    load's ``many_accounts`` accounts and ``many`` keys (on the throughput plan)."""
    _command("migrate", "--noinput", "-v0")
    _command("set_plan", "bench-throughput", *THROUGHPUT_PLAN)
    _command("set_plan", "bench-burst", *BURST_PLAN)
    keys: dict[str, object] = {}
    for name in ("throughput", "burst"):
        _command("create_account", f"bench-{name}", "--plan", f"bench-{name}")
        keys[f"{name}_key"] = _key(f"bench-{name}")
    accounts = [f"bench-many-{index:02d}" for index in range(many_accounts)]
    for account in accounts:
        _command("create_account", account, "--plan", "bench-throughput")
    keys["many_keys"] = [_key(accounts[index % many_accounts]) for index in range(many)]
    return keys


if __name__ == "__main__":
    import argparse

    import django

    parser = argparse.ArgumentParser()
    parser.add_argument("--many", type=int, default=MANY_KEYS)
    parser.add_argument("--accounts", type=int, default=MANY_ACCOUNTS)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.ratelimit.settings")
    django.setup()
    args = parser.parse_args()
    print(json.dumps(seed(args.many, args.accounts)))
