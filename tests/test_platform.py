"""What Heroku and Render need from the settings: errors that name the
variable, JSON for a disallowed Host under /api/, health checks that work
whatever Host they send, every 500 logged and mailed, and the Blueprint and
app.json as the README describes them."""

from __future__ import annotations

import json
import logging
import subprocess
from typing import Any

import pytest
import yaml
from django.core import mail
from django.test import Client
from django.test.utils import override_settings

from tests.processes import ROOT, gunicorn_command, manage, service_env
from tests.redis_server import free_port


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REDIS_STARTUP_WAIT", "abc", "REDIS_STARTUP_WAIT must be a number, not 'abc'."),
        ("VALIDATION_MAX_ATTEMPTS", "3.5", "VALIDATION_MAX_ATTEMPTS must be a whole number, not '3.5'."),
        ("DATABASE_STATEMENT_TIMEOUT", "ten", "DATABASE_STATEMENT_TIMEOUT must be a number, not 'ten'."),
        ("REDIS_SSL_CERT_REQS", "maybe", "REDIS_SSL_CERT_REQS must be one of required, optional, none, not 'maybe'."),
    ],
)
def test_a_bad_setting_stops_with_a_message_naming_it(name: str, value: str, message: str) -> None:
    result = manage("check", env=service_env(**{name: value}))
    assert result.returncode != 0
    assert message in result.stderr


def test_gunicorn_names_a_bad_web_concurrency() -> None:
    result = subprocess.run(
        gunicorn_command(free_port(), workers=2)[:-2],  # no --workers: the variable decides
        cwd=ROOT,
        env=service_env(WEB_CONCURRENCY="abc"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "WEB_CONCURRENCY must be a whole number, not 'abc'." in result.stderr


def test_admins_are_read_from_the_environment() -> None:
    code = "from django.conf import settings; print(settings.ADMINS)"
    result = manage("shell", "-c", code, env=service_env(ADMINS="Ops <ops@example.com>, dev@example.com"))
    assert (
        result.stdout.strip().splitlines()[-1] == "[('Ops', 'ops@example.com'), ('dev@example.com', 'dev@example.com')]"
    )


@pytest.mark.django_db
def test_a_disallowed_host_gets_json_under_the_api_and_health_still_answers() -> None:
    client = Client(HTTP_HOST="tollgate.attacker.example")
    response = client.get("/api/v1/ping")
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "bad_request",
            "message": "The Host header names a host this service does not serve.",
            "request_id": response["X-Request-ID"],
        }
    }
    assert client.get("/admin/login/").status_code == 400  # Django's own page elsewhere
    probe = Client(HTTP_HOST="10.1.2.3:10000")  # a platform probe on an internal address
    assert probe.get("/health/live").status_code == 200
    assert probe.get("/health").status_code == 200


@pytest.mark.django_db
def test_every_500_under_the_api_is_logged_with_its_traceback_and_mailed(caplog: Any, api_key: str) -> None:
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {api_key}")
    with (
        override_settings(
            ROOT_URLCONF="tests.urls_errors",
            ADMINS=[("Ops", "ops@example.com")],
            EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        ),
        caplog.at_level(logging.ERROR, logger="django.request"),
    ):
        response = client.get("/api/v1/boom")
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal_error",
        "message": "An unexpected error occurred; it has been logged.",
        "request_id": response["X-Request-ID"],
    }
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage() == "Internal Server Error: /api/v1/boom" and record.exc_info is not None
    assert len(mail.outbox) == 1 and "/api/v1/boom" in mail.outbox[0].subject


def test_the_render_blueprint_never_evicts_never_prompts_for_the_secret_and_shares_storage() -> None:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    services = {service["name"]: service for service in blueprint["services"]}
    assert services["tollgate-redis"]["maxmemoryPolicy"] == "noeviction"
    assert services["tollgate-web"]["healthCheckPath"] == "/health/ready"
    web_secret = next(v for v in services["tollgate-web"]["envVars"] if v.get("key") == "SECRET_KEY")
    worker_secret = next(v for v in services["tollgate-worker"]["envVars"] if v.get("key") == "SECRET_KEY")
    assert web_secret == {"key": "SECRET_KEY", "generateValue": True}
    assert worker_secret["fromService"] == {"type": "web", "name": "tollgate-web", "envVarKey": "SECRET_KEY"}
    for name in ("tollgate-web", "tollgate-worker"):
        assert {"fromGroup": "tollgate-storage"} in services[name]["envVars"]


def test_a_heroku_button_deploy_sets_redis_certificate_checks_by_variable() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    assert app["env"]["REDIS_SSL_CERT_REQS"]["value"] == "none"
    assert "heroku-redis" in app["addons"]


def test_check_deploy_warns_when_uploads_stay_on_the_local_disk(tmp_path: Any) -> None:
    env = service_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert "project.W001" in manage("check", "--deploy", env=env).stderr
    bucket = manage("check", "--deploy", env={**env, "AWS_STORAGE_BUCKET_NAME": "uploads"}).stderr
    assert "project.W001" not in bucket
