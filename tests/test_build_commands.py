"""Build and maintenance commands work with no Redis in reach, and the deploy
checks report Redis misconfiguration with their own ids."""

from __future__ import annotations

import pytest

from tests.processes import manage, service_env
from tests.redis_server import RedisServer, free_port

NO_REDIS = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}


@pytest.fixture
def sqlite_env(tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return service_env(DATABASE_URL=f"sqlite:///{tmp_path / 'build.sqlite3'}", STATIC_ROOT=str(tmp_path / "static"))


@pytest.mark.parametrize("redis", [{}, NO_REDIS], ids=["no REDIS_URL", "unreachable"])
def test_build_commands_work_without_redis(sqlite_env: dict[str, str], redis: dict[str, str]) -> None:
    env = {**sqlite_env, **redis}
    for args in (
        ["migrate", "--noinput"],
        ["makemigrations", "--check", "--dry-run"],
        ["check"],
        ["collectstatic", "--noinput"],
        ["shell", "-c", "print('shell ok')"],
        ["createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com"],
    ):
        result = manage(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert "❌" not in result.stderr


def test_check_deploy_reports_missing_redis_url(sqlite_env: dict[str, str]) -> None:
    result = manage("check", "--deploy", "--fail-level", "ERROR", env=sqlite_env)
    assert result.returncode != 0
    assert "project.E001" in result.stderr


def test_check_deploy_reports_a_bad_scheme(sqlite_env: dict[str, str]) -> None:
    result = manage("check", "--deploy", "--fail-level", "ERROR", env={**sqlite_env, "REDIS_URL": "memcached://x:1"})
    assert result.returncode != 0
    assert "project.E002" in result.stderr


def test_check_deploy_reports_unreachable_redis_without_its_password(sqlite_env: dict[str, str]) -> None:
    url = f"redis://:topsecret@127.0.0.1:{free_port()}/0"
    result = manage("check", "--deploy", "--fail-level", "ERROR", env={**sqlite_env, "REDIS_URL": url})
    assert result.returncode != 0
    assert "project.E003" in result.stderr
    assert "topsecret" not in result.stderr + result.stdout


def test_check_deploy_passes_with_redis(sqlite_env: dict[str, str], redis_server: RedisServer) -> None:
    result = manage("check", "--deploy", "--fail-level", "ERROR", env={**sqlite_env, "REDIS_URL": redis_server.url})
    assert result.returncode == 0, result.stderr


def test_release_script_migrates_then_gates_on_redis(sqlite_env: dict[str, str], redis_server: RedisServer) -> None:
    import subprocess

    from tests.processes import ROOT

    env = {**sqlite_env, "PATH": f"{ROOT / '.venv' / 'bin'}:{sqlite_env['PATH']}"}
    refused = subprocess.run(["bin/release"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "project.E001" in refused.stderr
    released = subprocess.run(
        ["bin/release"],
        cwd=ROOT,
        env={**env, "REDIS_URL": redis_server.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert released.returncode == 0, released.stderr


def test_secret_key_is_required_in_production(sqlite_env: dict[str, str]) -> None:
    env = {name: value for name, value in sqlite_env.items() if name != "SECRET_KEY"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY environment variable is required" in result.stderr
    assert manage("check", env={**env, "DEMO_MODE": "true"}).returncode == 0


def test_invalid_fail_mode_names_the_valid_values(sqlite_env: dict[str, str]) -> None:
    result = manage("check", env={**sqlite_env, "RATELIMIT_FAIL_MODE": "sometimes"})
    assert result.returncode != 0
    assert "RATELIMIT_FAIL_MODE must be one of closed, open" in result.stderr
