"""Webhooks in the admin: endpoints with their recent deliveries, and an
operator's resend."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.factories import AccountFactory
from tests.webhooks.receiver import receiver, signature_valid
from webhooks.models import Delivery, Endpoint
from webhooks.services import delivery_attempt, event_emit

pytestmark = pytest.mark.django_db


def test_an_operator_adds_an_endpoint_sees_its_deliveries_and_resends_one(
    admin_client: Client, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    account = AccountFactory()
    with receiver([200]) as hook:
        response = admin_client.post(
            "/admin/webhooks/endpoint/add/",
            {"account": account.pk, "url": hook.url, "events": '["job.failed"]', "active": "on"},
        )
        assert response.status_code == 302, response.content
        endpoint = Endpoint.objects.get()
        assert endpoint.secret.startswith("whsec_")
        assert endpoint.secret not in "".join(morsel.value for morsel in response.cookies.values())
        [delivery] = event_emit(account_id=account.pk, event="job.failed", data={"job": {"id": "x"}})
        assert delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        page = admin_client.get(f"/admin/webhooks/endpoint/{endpoint.pk}/change/").content.decode()
        assert str(delivery.event_id) in page and "succeeded" in page
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(
                "/admin/webhooks/delivery/", {"action": "resend", "_selected_action": [delivery.pk]}
            )
        assert response.status_code == 302
        assert Delivery.objects.get().status == "pending"
        assert delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        assert len(hook.received) == 2
        assert all(
            signature_valid(got.headers["tollgate-signature"], got.body, endpoint.secret) for got in hook.received
        )
    assert admin_client.get(f"/admin/webhooks/delivery/{delivery.pk}/change/").status_code == 200


def test_the_admin_refuses_what_the_api_refuses(admin_client: Client) -> None:
    account = AccountFactory()
    response = admin_client.post(
        "/admin/webhooks/endpoint/add/",
        {"account": account.pk, "url": "http://10.0.0.1/hook", "events": '["job.failed"]', "active": "on"},
    )
    assert response.status_code == 200 and "private" in response.content.decode()
    response = admin_client.post(
        "/admin/webhooks/endpoint/add/",
        {"account": account.pk, "url": "https://hooks.example.com/", "events": '["job.nope"]', "active": "on"},
    )
    assert response.status_code == 200
    assert not Endpoint.objects.exists()
