"""Webhook endpoints over the API, events of finished jobs, and single
delivery attempts to a receiver on loopback (in process; the real stack is
tests/webhooks/test_e2e.py)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.validation.conftest import Api
from tests.validation.data import ndjson, orders
from tests.validation.test_jobs_api import make_api, upload
from tests.webhooks.receiver import receiver, signature_valid
from validation.jobs import job_cancel, job_fail
from validation.runner import job_run
from webhooks import addresses as addresses_module
from webhooks import sender
from webhooks.models import Delivery, Endpoint
from webhooks.services import (
    deliveries_expire,
    deliveries_hand_over,
    delivery_attempt,
    delivery_resend,
    event_emit,
    retry_delay,
)

pytestmark = pytest.mark.django_db

EVENTS = ["job.succeeded", "job.failed", "job.cancelled"]


@pytest.fixture
def api(db: None) -> Api:
    return make_api()


@pytest.fixture
def private_allowed(settings: Any) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE = True


def register(api: Api, url: str, events: list[str] | None = None) -> Any:
    return api.post("/api/v1/webhooks", {"url": url, "events": events or EVENTS})


def test_an_endpoint_is_created_with_its_secret_once_listed_read_and_deleted(api: Api) -> None:
    created = register(api, "https://hooks.example.com/tollgate", ["job.failed", "job.succeeded"])
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["events"] == ["job.succeeded", "job.failed"]
    assert created["Location"] == body["self"]
    listed = api.get("/api/v1/webhooks").json()
    assert [row["id"] for row in listed["results"]] == [body["id"]]
    assert "secret" not in listed["results"][0]
    one = api.get(f"/api/v1/webhooks/{body['id']}").json()
    assert "secret" not in one and one["url"] == "https://hooks.example.com/tollgate"
    assert api.client.delete(f"/api/v1/webhooks/{body['id']}").status_code == 204
    assert api.get(f"/api/v1/webhooks/{body['id']}").json()["error"]["code"] == "webhook_not_found"


def test_another_account_sees_nothing(api: Api) -> None:
    endpoint = register(api, "https://hooks.example.com/a").json()
    other = make_api()
    assert other.get("/api/v1/webhooks").json()["results"] == []
    assert other.get(f"/api/v1/webhooks/{endpoint['id']}").status_code == 404
    assert other.client.delete(f"/api/v1/webhooks/{endpoint['id']}").status_code == 404
    assert Endpoint.objects.count() == 1


@pytest.mark.parametrize(
    ("url", "events", "code"),
    [
        ("ftp://hooks.example.com/", EVENTS, "invalid_webhook_url"),
        ("https://user:pw@hooks.example.com/", EVENTS, "invalid_webhook_url"),
        ("http://127.0.0.1:8000/hook", EVENTS, "invalid_webhook_url"),
        ("http://localhost/hook", EVENTS, "invalid_webhook_url"),
        ("http://10.1.2.3/hook", EVENTS, "invalid_webhook_url"),
        ("http://169.254.169.254/latest/meta-data", EVENTS, "invalid_webhook_url"),
        ("http://[::1]/hook", EVENTS, "invalid_webhook_url"),
        ("http://[::ffff:127.0.0.1]/hook", EVENTS, "invalid_webhook_url"),
        ("https://hooks.example.com/", [], "invalid_request"),
        ("https://hooks.example.com/", ["job.exploded"], "invalid_request"),
        ("https://hooks.example.com/", "job.failed", "invalid_request"),
        (12, EVENTS, "invalid_request"),
    ],
)
def test_bad_endpoints_are_400(api: Api, url: Any, events: Any, code: str) -> None:
    response = api.post("/api/v1/webhooks", {"url": url, "events": events})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert not Endpoint.objects.exists()


def test_loopback_is_allowed_when_private_addresses_are(api: Api, private_allowed: None) -> None:
    assert register(api, "http://127.0.0.1:8000/hook").status_code == 201


def _endpoint(api: Api, url: str, events: list[str] | None = None) -> dict[str, Any]:
    response = register(api, url, events)
    assert response.status_code == 201, response.content
    return response.json()


def test_a_finished_job_is_delivered_signed_to_each_subscribed_endpoint(
    api: Api, private_allowed: None, django_capture_on_commit_callbacks: Any
) -> None:
    with receiver() as hook, receiver() as other:
        endpoint = _endpoint(api, hook.url)
        _endpoint(api, other.url, ["job.failed"])
        job_id = upload(api, ndjson(orders(10, invalid_every=5)[0])).json()["id"]
        with django_capture_on_commit_callbacks(execute=True):
            assert job_run(job_id=job_id) == "succeeded"
        delivery = Delivery.objects.get()
        assert delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        [got] = hook.received
        assert other.received == []
    assert got.headers["content-type"] == "application/json"
    assert got.headers["tollgate-event"] == "job.succeeded"
    assert got.headers["tollgate-event-id"] == str(delivery.event_id)
    assert signature_valid(got.headers["tollgate-signature"], got.body, endpoint["secret"])
    assert not signature_valid(got.headers["tollgate-signature"], got.body + b" ", endpoint["secret"])
    event = json.loads(got.body)
    assert event["id"] == str(delivery.event_id) and event["type"] == "job.succeeded"
    assert event["data"]["job"]["id"] == job_id
    assert event["data"]["job"]["summary"] == {"valid": 8, "invalid": 2}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("succeeded", 1, 200)


def test_cancelled_and_failed_jobs_are_events(api: Api) -> None:
    _endpoint(api, "https://hooks.example.com/all")
    first = upload(api, ndjson(orders(3, invalid_every=5)[0])).json()["id"]
    second = upload(api, ndjson(orders(3, invalid_every=5)[0])).json()["id"]
    job_cancel(account_id=Endpoint.objects.get().account_id, job_id=first)
    assert job_fail(job_id=second, code="internal_error", message="boom")
    assert sorted(Delivery.objects.values_list("event", flat=True)) == ["job.cancelled", "job.failed"]


def test_a_failing_receiver_is_retried_with_backoff_and_the_same_event_id(api: Api, private_allowed: None) -> None:
    with receiver([500, 503, 200]) as hook:
        endpoint = Endpoint.objects.get(pk=_endpoint(api, hook.url)["id"])
        job_id = upload(api, ndjson(orders(3, invalid_every=5)[0])).json()["id"]
        job_cancel(account_id=endpoint.account_id, job_id=job_id)
        delivery = Delivery.objects.get()
        assert delivery_attempt(delivery_id=delivery.pk) == "retry"
        delivery.refresh_from_db()
        assert delivery.response_status == 500 and delivery.attempts == 1
        assert delivery.next_attempt_at - delivery.last_attempt_at == timedelta(seconds=retry_delay(1))
        assert deliveries_hand_over() == 0  # not due yet
        Delivery.objects.update(next_attempt_at=timezone.now())
        assert deliveries_hand_over() == 1
        assert deliveries_hand_over() == 0  # leased while it is in the queue
        assert delivery_attempt(delivery_id=delivery.pk) == "retry"
        assert delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        assert delivery_attempt(delivery_id=delivery.pk) == "skipped"
    ids = {got.headers["tollgate-event-id"] for got in hook.received}
    assert ids == {str(delivery.event_id)} and len(hook.received) == 3
    assert all(signature_valid(got.headers["tollgate-signature"], got.body, endpoint.secret) for got in hook.received)


def test_backoff_doubles_to_six_hours_and_gives_up_after_three_days(settings: Any) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    assert [retry_delay(n) for n in (1, 2, 3, 10)] == [30, 60, 120, 30 * 512]
    assert retry_delay(20) == 6 * 3600
    total, attempts = 0.0, 0
    while total <= 72 * 3600:
        attempts += 1
        total += retry_delay(attempts)
    assert 15 <= attempts <= 25  # about three days of attempts


def test_after_the_retry_window_a_delivery_fails_and_an_operator_can_resend_it(
    api: Api, private_allowed: None, django_capture_on_commit_callbacks: Any
) -> None:
    with receiver([500]) as hook:
        endpoint = Endpoint.objects.get(pk=_endpoint(api, hook.url)["id"])
        job_id = upload(api, ndjson(orders(3, invalid_every=5)[0])).json()["id"]
        job_cancel(account_id=endpoint.account_id, job_id=job_id)
        delivery = Delivery.objects.get()
        assert delivery_attempt(delivery_id=delivery.pk) == "retry"
        # The last retry would come after the window: the attempt that fails
        # now is the last one.
        Delivery.objects.update(retry_until=timezone.now() + timedelta(seconds=1), next_attempt_at=timezone.now())
        assert delivery_attempt(delivery_id=delivery.pk) == "failed"
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("failed", 2)
        assert deliveries_hand_over() == 0
        hook.script[:] = [200]
        with django_capture_on_commit_callbacks(execute=True):
            delivery_resend(delivery=delivery)
        assert delivery_attempt(delivery_id=delivery.pk) == "succeeded"
    assert [got.headers["tollgate-event-id"] for got in hook.received] == [str(delivery.event_id)] * 3


def test_a_redirect_to_another_host_is_not_followed(private_allowed: None) -> None:
    with receiver() as elsewhere, receiver([("redirect", "http://localhost:1/x")]) as hook:
        outcome = sender.send(url=hook.url, secret="s", event="job.failed", event_id="e", body=b"{}")
        assert not outcome.delivered and outcome.status == 307
        assert "another host" in outcome.error
        assert elsewhere.received == []
    with receiver() as hook:
        with receiver([("redirect", hook.url + "/moved")]) as first:
            outcome = sender.send(url=first.url, secret="s", event="job.failed", event_id="e", body=b"{}")
        assert not outcome.delivered  # another port: another origin
        assert hook.received == []


def test_a_redirect_on_the_same_host_is_followed(private_allowed: None) -> None:
    with receiver([("redirect", "/elsewhere"), 200]) as hook:
        outcome = sender.send(url=hook.url, secret="s", event="job.failed", event_id="e", body=b"{}")
    assert outcome.delivered
    assert [got.path for got in hook.received] == ["/hook", "/elsewhere"]


def test_loopback_is_refused_at_delivery_time_in_production() -> None:
    with receiver() as hook:
        outcome = sender.send(url=hook.url, secret="s", event="job.failed", event_id="e", body=b"{}")
        assert not outcome.delivered and "private" in outcome.error
        assert hook.received == []


@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["93.184.215.14", "10.0.0.7"], ["::ffff:169.254.169.254"]])
def test_a_name_that_resolves_to_a_private_address_is_refused(monkeypatch: Any, addresses: list[str]) -> None:
    # DNS answers as a hostile name server would (rebinding to our network).
    def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        assert host == "hooks.example.com"
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    monkeypatch.setattr(addresses_module.socket, "getaddrinfo", getaddrinfo)
    outcome = sender.send(url="http://hooks.example.com/hook", secret="s", event="job.failed", event_id="e", body=b"{}")
    assert not outcome.delivered and "private" in outcome.error


def test_a_receiver_that_hangs_is_a_failed_attempt(private_allowed: None, monkeypatch: Any) -> None:
    monkeypatch.setattr(sender, "TIMEOUT_SECONDS", 0.3)
    with receiver([("sleep", 2)]) as hook:
        outcome = sender.send(url=hook.url, secret="s", event="job.failed", event_id="e", body=b"{}")
    assert not outcome.delivered and "Timeout" in outcome.error


def test_an_account_has_at_most_20_endpoints(api: Api) -> None:
    for n in range(20):
        assert register(api, f"https://hooks.example.com/{n}").status_code == 201
    refused = register(api, "https://hooks.example.com/21")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "webhook_limit_reached"


def test_a_receiver_that_trickles_its_answer_runs_out_the_attempts_time(
    private_allowed: None, monkeypatch: Any
) -> None:
    # Every read gets a byte well within the step timeout; the attempt's own
    # deadline is what ends it.
    monkeypatch.setattr(sender, "TIMEOUT_SECONDS", 0.5)
    with receiver([("trickle", 0.05)]) as hook:
        outcome = sender.send(url=hook.url, secret="s", event="job.failed", event_id="e", body=b"{}")
    assert not outcome.delivered and "Timeout" in outcome.error


def test_an_attempt_is_counted_before_it_is_sent(api: Api, private_allowed: None, monkeypatch: Any) -> None:
    """A worker killed while it sends leaves the attempt counted and the next
    one scheduled: the sweep retries it then, within the retry window."""
    endpoint = Endpoint.objects.get(pk=_endpoint(api, "http://127.0.0.1:9/hook")["id"])
    job_id = upload(api, ndjson(orders(3, invalid_every=5)[0])).json()["id"]
    job_cancel(account_id=endpoint.account_id, job_id=job_id)
    delivery = Delivery.objects.get()

    def killed(**kwargs: Any) -> Any:
        row = Delivery.objects.get(pk=delivery.pk)
        assert row.attempts == 1 and row.next_attempt_at == row.last_attempt_at + timedelta(seconds=retry_delay(1))
        raise SystemExit("the work horse is killed")

    monkeypatch.setattr("webhooks.services.send", killed)
    with pytest.raises(SystemExit):
        delivery_attempt(delivery_id=delivery.pk)
    Delivery.objects.update(retry_until=timezone.now())
    assert delivery_attempt(delivery_id=delivery.pk) == "failed"  # the window is over: not sent again


def test_old_finished_deliveries_are_deleted_pending_ones_stay(api: Api) -> None:
    endpoint = Endpoint.objects.get(pk=_endpoint(api, "https://hooks.example.com/")["id"])
    deliveries = [event_emit(account_id=endpoint.account_id, event="job.failed", data={})[0] for _ in range(3)]
    Delivery.objects.filter(pk=deliveries[0].pk).update(status="succeeded")
    Delivery.objects.filter(pk=deliveries[1].pk).update(status="failed")
    assert deliveries_expire() == 0
    Delivery.objects.update(created_at=timezone.now() - timedelta(days=31))
    assert deliveries_expire() == 2
    assert list(Delivery.objects.values_list("pk", flat=True)) == [deliveries[2].pk]
