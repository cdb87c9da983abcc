"""``/api/v1/openapi.json`` and the page for humans at ``/api/docs/``.

Both are public and unmetered (``quotas.decorators.unmetered``): a client needs
the description before it has a key.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apidocs.document import openapi_document
from project.api import api_view, json_response
from quotas.decorators import unmetered


@api_view("GET", "HEAD")
@unmetered
def openapi_json(request: HttpRequest) -> HttpResponse:
    return json_response(openapi_document(), headers={"Access-Control-Allow-Origin": "*"})


@api_view("GET", "HEAD")
@unmetered
def docs(request: HttpRequest) -> HttpResponse:
    """A small page whose own script renders openapi.json (no CDN)."""
    return render(request, "apidocs/docs.html")
