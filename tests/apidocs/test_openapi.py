"""The OpenAPI description and the docs page: public, unmetered, and in step
with the URL configuration and the error classes."""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from apidocs.components import ERROR_CODES
from project.errors import ApiError
from tests.redis_server import RedisServer

URL = "/api/v1/openapi.json"


@pytest.fixture
def document(client: Client) -> dict:
    return client.get(URL).json()


def test_served_without_a_key_and_unmetered(client: Client, redis_server: RedisServer) -> None:
    response = client.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "RateLimit" not in response and "X-RateLimit-Limit" not in response
    assert response.json()["openapi"] == "3.1.0"
    assert redis_server.client().keys("tg:*") == []  # nothing counted


def _routes(patterns: list, prefix: str = "") -> set[str]:
    routes = set()
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            routes |= _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            routes.add(route)
    return routes


def test_every_api_v1_route_is_documented_and_nothing_else(document: dict) -> None:
    routes = {
        "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        for route in _routes(get_resolver().url_patterns)
        if route.startswith("api/v1/")
    }
    assert routes == set(document["paths"])


def _error_classes() -> set[type[ApiError]]:
    for package in ("project", "quotas", "validation", "apidocs", "health"):
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            if not info.name.startswith(("management", "migrations", "wsgi")):
                importlib.import_module(f"{package}.{info.name}")
    found, todo = set(), [ApiError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_code_in_the_code_is_documented_with_its_status() -> None:
    for cls in _error_classes():
        if cls is ApiError or "code" not in vars(cls):  # e.g. LimitExceeded: codes given per instance
            continue
        assert cls.code in ERROR_CODES, f"{cls.__module__}.{cls.__name__}: {cls.code!r} is not documented"
        if "status" in vars(cls):
            assert ERROR_CODES[cls.code][0] == cls.status, cls


def test_errors_shape_and_headers(document: dict) -> None:
    components = document["components"]
    assert set(components["securitySchemes"]) == {"bearerAuth", "apiKeyAuth"}
    assert components["securitySchemes"]["apiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "`X-API-Key: tg_…`",
    }
    too_many = components["responses"]["TooManyRequests"]
    assert {"Retry-After", "RateLimit", "RateLimit-Policy", "X-RateLimit-Reset"} <= set(too_many["headers"])
    assert components["headers"]["Retry-After"]["required"] is True
    assert "Retry-After" in components["responses"]["ServiceUnavailable"]["headers"]
    assert components["schemas"]["Error429"]["properties"]["error"]["properties"]["code"]["enum"] == [
        "quota_exceeded",
        "rate_limited",
    ]
    for code, (status, _) in ERROR_CODES.items():
        assert f"| {status} | `{code}` |" in document["info"]["description"]


def test_every_metered_operation_documents_401_and_503(document: dict) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if operation.get("security") == []:
                continue
            assert {"401", "503"} <= set(operation["responses"]), (method, path)


def test_docs_page_is_public_and_served_from_the_project(client: Client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert links and all(link.startswith(("/", "#")) for link in links), links  # nothing from another site
    assert "<script" not in html  # rendered on the server
    response = client.post("/api/docs/")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_docs_page_renders_markdown_and_has_samples_for_every_operation(client: Client, document: dict) -> None:
    html = client.get("/api/docs/").content.decode()
    # Markdown rendered: summaries and descriptions have no raw backticks.
    assert "<code>max_sync_instances</code>" in html
    assert "`" not in re.sub(r"<pre.*?</pre>", "", html, flags=re.S)  # schemas and samples are shown as code
    for path, item in document["paths"].items():
        for method, operation in item.items():
            section = html.split(f'id="{operation["operationId"]}"', 1)[1].split("</details>", 1)[0]
            assert 'class="sample curl"' in section and 'class="sample python"' in section, operation["operationId"]
            assert path.split("{")[0] in section
    validate = html.split('id="validate"', 1)[1].split("</details>", 1)[0]
    assert "Idempotency-Key" in validate and "json={" in validate


def test_every_error_has_a_doc_url_to_its_entry_in_the_docs_page(client: Client, db: None) -> None:
    response = client.get("/api/v1/ping")
    error = response.json()["error"]
    assert error["code"] == "missing_api_key"
    assert error["doc_url"] == "/api/docs/#error-missing_api_key"
    html = client.get("/api/docs/").content.decode()
    for code in ERROR_CODES:
        assert f'id="error-{code}"' in html, code


def test_doc_url_follows_api_docs_url(client: Client, db: None, settings: Any) -> None:
    settings.API_DOCS_URL = "https://tollgate.example.com/api/docs/"
    error = client.get("/api/v1/ping").json()["error"]
    assert error["doc_url"] == "https://tollgate.example.com/api/docs/#error-missing_api_key"
