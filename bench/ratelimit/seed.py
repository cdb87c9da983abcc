"""Set up the bench's throwaway database with the project's own management
commands: ``migrate``, ``set_plan``, ``create_account``, ``create_api_key --json``.

Run by ``run.py`` as ``python -m bench.ratelimit.seed`` with the bench's
``DATABASE_URL``; prints one JSON line ``{"throughput_key": ..., "burst_key": ...}``.
"""

from __future__ import annotations

import io
import json
import os

from bench.ratelimit.plans import BURST_PLAN, THROUGHPUT_PLAN


def _command(*args: str) -> str:
    from django.core.management import call_command

    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def seed() -> dict[str, str]:
    """Create both plans, an account on each and one key per account."""
    _command("migrate", "--noinput", "-v0")
    _command("set_plan", "bench-throughput", *THROUGHPUT_PLAN)
    _command("set_plan", "bench-burst", *BURST_PLAN)
    _command("create_account", "bench-throughput", "--plan", "bench-throughput")
    _command("create_account", "bench-burst", "--plan", "bench-burst")
    keys = {}
    for name in ("throughput", "burst"):
        issued = json.loads(_command("create_api_key", f"bench-{name}", "--label", "bench", "--json").splitlines()[-1])
        keys[f"{name}_key"] = issued["key"]
    return keys


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.ratelimit.settings")
    django.setup()
    print(json.dumps(seed()))
