"""The docs page at ``/api/docs/``, rendered on the server from the OpenAPI
document: Markdown (markdown-it-py, raw HTML off, so nothing in the document
becomes markup of its own), operations by tag with their parameters, bodies,
responses and code samples (curl and Python), and the error catalogue with
one anchor per code (``#error-<code>``: where ``doc_url`` points).
"""

from __future__ import annotations

import functools
import json
import shlex
from typing import Any

from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from apidocs.components import ERROR_CODES
from apidocs.document import openapi_document

Json = dict[str, Any]
METHODS = ("get", "head", "post", "delete")


@functools.cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def block(text: str) -> SafeString:
    return mark_safe(_markdown().render(text or ""))  # noqa: S308  (markdown-it escapes; raw HTML is off)


def inline(text: str) -> SafeString:
    return mark_safe(_markdown().renderInline(text or ""))  # noqa: S308  (as above)


def _resolve(document: Json, node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = functools.reduce(lambda at, key: at[key], node["$ref"].lstrip("#/").split("/"), document)
    return node


def _example_path(path: str, parameters: list[Json]) -> str:
    for parameter in parameters:
        if parameter.get("in") == "path":
            value = parameter.get("example") or ("3f2b8c1e-…" if "uuid" in json.dumps(parameter["schema"]) else "…")
            path = path.replace("{" + parameter["name"] + "}", str(value))
    query = [f"{p['name']}={p['example']}" for p in parameters if p.get("in") == "query" and "example" in p]
    return path + ("?" + "&".join(query) if query else "")


def _example_body(request_body: Json | None) -> tuple[str, Any] | None:
    """(media type, example) of the body's first content type."""
    if not request_body:
        return None
    media, content = next(iter(request_body["content"].items()))
    return media, content.get("example")


def samples(path: str, method: str, operation: Json) -> dict[str, str]:
    """A curl line and a Python (httpx) snippet for ``operation``."""
    parameters = operation.get("parameters", [])
    target = _example_path(path, parameters)
    body = _example_body(operation.get("requestBody"))
    idempotent = method == "post"
    keyed = operation.get("security") != []
    url = f'"$TOLLGATE_URL{target}"' if "'" not in target and '"' not in target else shlex.quote(target)
    curl = ["curl -i" if method == "get" else "curl -I" if method == "head" else f"curl -i -X {method.upper()}", url]
    python = ["import os", "", "import httpx", "", 'URL = os.environ["TOLLGATE_URL"]']
    if keyed:
        python.append('KEY = os.environ["TOLLGATE_KEY"]')
    python.append(
        "client = httpx.Client(base_url=URL" + (', headers={"Authorization": f"Bearer {KEY}"})' if keyed else ")")
    )
    if keyed:
        curl.append('-H "Authorization: Bearer $TOLLGATE_KEY"')
    call_args = [repr(target)]
    headers: dict[str, str] = {}
    if idempotent:
        curl.append('-H "Idempotency-Key: $(uuidgen)"')
        python.insert(1, "import uuid")
        headers["Idempotency-Key"] = "str(uuid.uuid4())"
    if body is not None:
        media, example = body
        if media == "application/json":
            curl += ["-H 'Content-Type: application/json'", "-d " + shlex.quote(json.dumps(example))]
            call_args.append(f"json={example!r}")
        elif media == "multipart/form-data":
            curl.append("-F file=@orders.ndjson")
            call_args.append('files={"file": open("orders.ndjson", "rb")}')
        else:
            curl += [f"-H 'Content-Type: {media}'", "--data-binary @orders.ndjson"]
            call_args.append('content=open("orders.ndjson", "rb")')
            headers["Content-Type"] = repr(media)
    if headers:
        call_args.append("headers={" + ", ".join(f'"{k}": {v}' for k, v in headers.items()) + "}")
    python.append(f"response = client.{method}({', '.join(call_args)})")
    python.append("response.raise_for_status()")
    if method not in ("head", "delete"):
        python.append("print(response.json())" if "errors" not in path else "print(response.text)")
    return {"curl": " \\\n  ".join(curl), "python": "\n".join(python)}


def _content(document: Json, body: Json) -> list[dict[str, str]]:
    return [
        {"type": media, "schema": json.dumps(_resolve(document, entry.get("schema", {})), indent=2)}
        for media, entry in (body.get("content") or {}).items()
    ]


def _operation(document: Json, path: str, method: str, operation: Json) -> Json:
    parameters = [_resolve(document, p) for p in operation.get("parameters", [])]
    responses = []
    for status, response in operation["responses"].items():
        response = _resolve(document, response)
        responses.append(
            {
                "status": status,
                "description": inline(response.get("description", "")),
                "headers": ", ".join(response.get("headers") or {}),
                "content": _content(document, response),
            }
        )
    request_body = operation.get("requestBody")
    return {
        "id": operation["operationId"],
        "method": method,
        "path": path,
        "summary": inline(operation.get("summary", "")),
        "description": block(operation.get("description", "")),
        "public": operation.get("security") == [],
        "parameters": [
            {
                "name": p["name"],
                "where": p["in"] + (", required" if p.get("required") else ""),
                "description": inline(p.get("description", "")),
            }
            for p in parameters
        ],
        "request_body": _content(document, _resolve(document, request_body)) if request_body else [],
        "responses": responses,
        "samples": samples(path, method, operation),
    }


@functools.cache
def page_context() -> Json:
    """What the template shows (built once per process, like the document)."""
    document = openapi_document()
    description = document["info"]["description"]
    # The catalogue is rendered below with an anchor per code, not as the
    # document's Markdown table.
    intro = description.split("| status | code | when |")[0]
    sections = []
    for tag in document["tags"]:
        operations = [
            _operation(document, path, method, operation)
            for path, item in document["paths"].items()
            for method, operation in item.items()
            if method in METHODS and operation.get("tags", [None])[0] == tag["name"]
        ]
        if tag["name"] == "webhooks":
            operations += [
                {**_operation(document, "(your endpoint)", "post", event["post"]), "samples": None}
                for event in document.get("webhooks", {}).values()
            ]
        sections.append(
            {"name": tag["name"], "description": inline(tag.get("description", "")), "operations": operations}
        )
    errors = [
        {"code": code, "status": status, "when": inline(when)}
        for code, (status, when) in sorted(ERROR_CODES.items(), key=lambda item: (item[1][0], item[0]))
    ]
    return {
        "version": document["info"]["version"],
        "openapi": document["openapi"],
        "intro": block(intro),
        "sections": sections,
        "errors": errors,
    }
