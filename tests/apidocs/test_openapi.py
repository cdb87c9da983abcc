"""The OpenAPI description and the docs page: public, unmetered, and in step
with the URL configuration and the error classes."""

from __future__ import annotations

import importlib
import pkgutil
import re

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
    assert 'src="/static/apidocs/docs.js"' in html and 'data-spec="/api/v1/openapi.json"' in html
    assert "http://" not in html and "https://" not in html  # nothing from another site
    assert client.get("/static/apidocs/docs.js").status_code == 200
    response = client.post("/api/docs/")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_the_document_is_valid_openapi_3_1(document: dict) -> None:
    """Against the OpenAPI 3.1 meta-schema (and its JSON Schema 2020-12
    dialect), by openapi-spec-validator."""
    from openapi_spec_validator import OpenAPIV31SpecValidator, validate

    validate(document, cls=OpenAPIV31SpecValidator)


def test_every_post_takes_an_idempotency_key(document: dict) -> None:
    posts = [(path, item["post"]) for path, item in document["paths"].items() if "post" in item]
    assert {path for path, _ in posts} == {"/api/v1/schemas", "/api/v1/validate", "/api/v1/jobs", "/api/v1/webhooks"}
    for path, post in posts:
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post["parameters"]), path
        assert {"400", "409", "422"} <= set(post["responses"]), path
