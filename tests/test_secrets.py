"""The Redis password never reaches logs, error pages or 500 e-mails."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.test.utils import override_settings

from project.redis import display_url, redact
from project.reporting import RedactSecretsFilter

PASSWORD = "Zq-very-secret-9"
URL = f"redis://default:{PASSWORD}@127.0.0.1:6390/2"


def test_display_url_masks_the_password() -> None:
    assert display_url(URL) == "redis://default:***@127.0.0.1:6390/2"
    assert display_url("rediss://:p@h.example.com:25061") == "rediss://:***@h.example.com:25061/0"
    assert display_url("unix:///run/redis.sock?db=3") == "unix:///run/redis.sock?db=3"


def test_redact_removes_url_passwords_and_known_secrets() -> None:
    assert redact(f"x {URL} y") == "x redis://default:***@127.0.0.1:6390/2 y"
    assert redact(f"password={PASSWORD}", (PASSWORD,)) == "password=***"


def test_log_records_are_redacted() -> None:
    record = logging.LogRecord("tollgate", logging.ERROR, __file__, 1, "connecting to %s", (URL,), None)
    with override_settings(REDIS_URL=URL):
        RedactSecretsFilter().filter(record)
    assert PASSWORD not in record.getMessage()


def test_log_records_with_the_bare_password_are_redacted() -> None:
    record = logging.LogRecord("tollgate", logging.ERROR, __file__, 1, "auth failed for %r", (PASSWORD,), None)
    with override_settings(REDIS_URL=URL):
        RedactSecretsFilter().filter(record)
    assert PASSWORD not in record.getMessage()


@pytest.mark.parametrize("setting", ["REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD", "QUEUE_REDIS_URL"])
def test_log_records_with_the_other_redis_passwords_are_redacted(setting: str) -> None:
    """The servers' password through Sentinel or a Cluster, the Sentinels'
    own, and the queue Redis URL's."""
    value = URL if setting == "QUEUE_REDIS_URL" else PASSWORD
    record = logging.LogRecord("tollgate", logging.ERROR, __file__, 1, "auth failed for %r", (PASSWORD,), None)
    with override_settings(**{setting: value}):
        RedactSecretsFilter().filter(record)
    assert PASSWORD not in record.getMessage()


@pytest.mark.django_db
def test_500_email_to_admins_has_no_password() -> None:
    client = Client(raise_request_exception=False)
    with override_settings(
        REDIS_URL=URL,
        ROOT_URLCONF="tests.urls_errors",
        ADMINS=[("Ops", "ops@example.com")],
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        DEBUG=False,
    ):
        response = client.get("/boom")
    assert response.status_code == 500
    assert PASSWORD.encode() not in response.content
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    everything = message.subject + message.body + "".join(str(part[0]) for part in message.alternatives)
    assert "could not use" in everything  # the report is there...
    assert PASSWORD not in everything  # ...without the password


@pytest.mark.django_db
def test_debug_error_page_has_no_password() -> None:
    client = Client(raise_request_exception=False)
    with override_settings(REDIS_URL=URL, ROOT_URLCONF="tests.urls_errors", DEBUG=True):
        response = client.get("/boom")
    assert response.status_code == 500
    assert b"could not use" in response.content
    assert PASSWORD.encode() not in response.content


def test_the_database_password_and_the_bucket_secret_are_redacted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    record = logging.LogRecord("tollgate", logging.ERROR, __file__, 1, "%s %s", ("db-pw-123", "s3-secret-456"), None)
    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", "db-pw-123")
    with override_settings(STORAGES={"default": {"BACKEND": "x", "OPTIONS": {"secret_key": "s3-secret-456"}}}):
        RedactSecretsFilter().filter(record)
    assert record.getMessage() == "*** ***"
