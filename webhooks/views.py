"""``/api/v1/webhooks``: an account's webhook endpoints.

Each call costs one request against the rate limits and no quota units. The
endpoint's ``secret`` is in the answer of the POST that creates it, and
never again.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from project.api import api_view, json_body, json_response
from quotas.decorators import metered
from validation.exceptions import InvalidRequest
from validation.representations import paginate
from webhooks.models import Endpoint
from webhooks.services import endpoint_create, endpoint_delete, endpoint_get


def _account(request: HttpRequest) -> int:
    return request.meter.record.account_id  # type: ignore[attr-defined]


def endpoint_shown(request: HttpRequest, endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": str(endpoint.pk),
        "url": endpoint.url,
        "events": endpoint.events,
        "active": endpoint.active,
        "created_at": endpoint.created_at.isoformat().replace("+00:00", "Z"),
        "self": request.build_absolute_uri(reverse("webhooks-endpoint", args=[endpoint.pk])),
    }


@api_view("GET", "POST")
@metered(requests=1, units=0)
def endpoints(request: HttpRequest) -> HttpResponse:
    account_id = _account(request)
    if request.method == "GET":
        rows = Endpoint.objects.filter(account_id=account_id).order_by("-created_at", "-id")
        return json_response(paginate(request, rows, lambda endpoint: endpoint_shown(request, endpoint)))
    body = json_body(request)
    if not isinstance(body, dict):
        raise InvalidRequest('Send {"url", "events"}.')
    endpoint = endpoint_create(account_id=account_id, url=body.get("url"), events=body.get("events"))
    shown = endpoint_shown(request, endpoint)
    return json_response({**shown, "secret": endpoint.secret}, status=201, headers={"Location": shown["self"]})


@api_view("GET", "DELETE")
@metered(requests=1, units=0)
def endpoint_detail(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    if request.method == "DELETE":
        endpoint_delete(account_id=_account(request), endpoint_id=endpoint_id)
        return HttpResponse(status=204)
    return json_response(endpoint_shown(request, endpoint_get(account_id=_account(request), endpoint_id=endpoint_id)))
