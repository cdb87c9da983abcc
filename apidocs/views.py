"""``/api/v1/openapi.json`` and the page for humans at ``/api/docs/``.

Both are public and unmetered (``quotas.decorators.unmetered``): a client needs
the description before it has a key.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apidocs.document import openapi_document
from apidocs.page import page_context
from project.api import api_view, json_response
from quotas.decorators import unmetered


@api_view("GET", "HEAD")
@unmetered
def openapi_json(request: HttpRequest) -> HttpResponse:
    return json_response(openapi_document(), headers={"Access-Control-Allow-Origin": "*"})


@api_view("GET", "HEAD")
@unmetered
def docs(request: HttpRequest) -> HttpResponse:
    """The page for humans, rendered from the document (nothing from another site)."""
    return render(request, "apidocs/docs.html", page_context())
