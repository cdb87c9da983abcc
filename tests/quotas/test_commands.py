"""set_plan, create_account, create_api_key, revoke_api_key, seed_demo."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from quotas import keys
from quotas.models import MB, Account, ApiKey, Plan

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as error:
        run(*args)
    assert error.value.returncode == 2
    return str(error.value)


def test_set_plan_creates_then_replaces_lists() -> None:
    run("set_plan", "pro", "--rate", "10/s", "--rate", "500/m", "--quota", "10000/day", "--max-upload-mb", "20")
    plan = Plan.objects.get(name="pro")
    assert (plan.rate_limits, plan.quotas, plan.max_upload_bytes) == ("10/s, 500/m", "10000/day", 20 * MB)
    run("set_plan", "pro", "--rate", "1/h", "--max-sync-instances", "5")
    plan.refresh_from_db()
    assert (plan.rate_limits, plan.quotas, plan.max_sync_instances) == ("1/h", "10000/day", 5)
    run("set_plan", "pro", "--no-quota")
    plan.refresh_from_db()
    assert plan.quotas == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "10/x"], "is not a rate limit"),
        (["--rate", "0/s"], "the count must be"),
        (["--rate", "10/s", "--rate", "20/s"], "only one rate limit"),
        (["--quota", "5/week"], "is not a quota"),
        (["--quota", "5/day", "--quota", "6/day"], "only one quota"),
        (["--max-upload-mb", "0"], "at least 1"),
    ],
)
def test_set_plan_refuses_bad_arguments_and_changes_nothing(args: list[str], message: str) -> None:
    run("set_plan", "pro", "--rate", "10/s")
    assert message in refused("set_plan", "pro", *args)
    assert Plan.objects.get(name="pro").rate_limits == "10/s"
    assert message in refused("set_plan", "other", *args)
    assert not Plan.objects.filter(name="other").exists()


def test_create_account_and_key() -> None:
    run("set_plan", "free", "--rate", "1/s")
    assert "Created account acme" in run("create_account", "acme", "--plan", "free")
    key = run("create_api_key", "acme", "--label", "ci").strip().splitlines()[-1]
    parsed = keys.parse(key)
    assert parsed is not None
    stored = ApiKey.objects.get(prefix=parsed.prefix)
    assert (
        stored.label == "ci" and key not in stored.secret_hash and stored.secret_hash == keys.hash_secret(parsed.secret)
    )
    payload = json.loads(run("create_api_key", "acme", "--json"))
    assert set(payload) == {"key", "prefix", "account", "plan"}
    assert (payload["account"], payload["plan"]) == ("acme", "free")
    assert keys.parse(payload["key"]).prefix == payload["prefix"]  # type: ignore[union-attr]


def test_account_and_key_commands_refuse_unknown_names() -> None:
    assert "No plan named 'nope'" in refused("create_account", "acme", "--plan", "nope")
    assert not Account.objects.exists()
    assert "No account named 'ghost'" in refused("create_api_key", "ghost")
    run("set_plan", "free")
    run("create_account", "acme", "--plan", "free")
    assert "already exists" in refused("create_account", "acme", "--plan", "free")


def test_revoke_by_prefix_or_full_key() -> None:
    run("set_plan", "free")
    run("create_account", "acme", "--plan", "free")
    first = json.loads(run("create_api_key", "acme", "--json"))
    second = json.loads(run("create_api_key", "acme", "--json"))
    assert "Revoked" in run("revoke_api_key", first["prefix"])
    assert "Revoked" in run("revoke_api_key", second["key"])
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2
    assert "No API key with prefix" in refused("revoke_api_key", "zzzzzzzz")


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from django.core.management import ManagementUtility

    with pytest.raises(SystemExit) as exit_:
        ManagementUtility(["manage.py", "create_account", "acme"]).execute()
    assert exit_.value.code == 2
    assert "--plan" in capsys.readouterr().err


def demo_key_in(output: str) -> str:
    key = next(word for word in output.split() if word.startswith("tg_"))
    assert keys.parse(key) is not None
    return key


def usable_demo_keys() -> list[str]:
    return list(ApiKey.objects.filter(account__name="demo", revoked_at=None).values_list("prefix", flat=True))


def test_seed_demo_prints_a_working_key_and_curl_line() -> None:
    output = run("seed_demo", "--base-url", "http://127.0.0.1:8123")
    key = demo_key_in(output)
    assert f'curl -i -H "Authorization: Bearer {key}" http://127.0.0.1:8123/api/v1/ping' in output
    again = demo_key_in(run("seed_demo"))  # no key file: a new key, the old one revoked
    assert again != key
    assert Plan.objects.filter(name="demo").count() == 1
    assert Account.objects.filter(name="demo").count() == 1
    assert usable_demo_keys() == [keys.parse(again).prefix]  # type: ignore[union-attr]


def test_seed_demo_with_a_key_file_prints_the_same_key_while_it_works(tmp_path: Path) -> None:
    key_file = tmp_path / "run" / "demo_key"
    key = demo_key_in(run("seed_demo", "--key-file", str(key_file)))
    assert key_file.read_text().strip() == key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert demo_key_in(run("seed_demo", "--key-file", str(key_file))) == key
    assert ApiKey.objects.filter(account__name="demo").count() == 1

    run("revoke_api_key", key)  # a kept key that no longer works is replaced, and the file with it
    new = demo_key_in(run("seed_demo", "--key-file", str(key_file)))
    assert new != key and key_file.read_text().strip() == new
    assert usable_demo_keys() == [keys.parse(new).prefix]  # type: ignore[union-attr]


def test_seed_demo_keeps_one_demo_key_and_leaves_other_keys_alone(tmp_path: Path) -> None:
    key_file = tmp_path / "demo_key"
    key_file.write_text("tg_notakey\n")
    first = demo_key_in(run("seed_demo", "--key-file", str(key_file)))
    run("create_api_key", "demo", "--label", "mine")
    run("seed_demo")  # a stray demo key, made without the file
    assert demo_key_in(run("seed_demo", "--key-file", str(tmp_path / "elsewhere"))) != first
    labels = sorted(ApiKey.objects.filter(account__name="demo", revoked_at=None).values_list("label", flat=True))
    assert labels == ["make run", "mine"]
