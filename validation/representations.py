"""How schemas and jobs look in API answers, and list pagination."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse

from validation.exceptions import InvalidRequest
from validation.models import Schema, ValidationJob
from validation.registry import schema_uri

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def schema_summary(schema: Schema) -> dict[str, Any]:
    return {
        "name": schema.name,
        "version": schema.version,
        "uri": schema_uri(schema.name, schema.version),
        "draft": schema.draft,
        # What its references by $id resolve to, pinned at registration.
        "references": schema.pins or {},
        "created_at": _time(schema.created_at),
    }


def schema_full(schema: Schema) -> dict[str, Any]:
    # The stored JSON text as it is: never parsed and serialised again, so a
    # schema reads back whatever its nesting.
    return {**schema_summary(schema), "schema": orjson.Fragment(schema.document)}


def job_url(request: HttpRequest, job: ValidationJob, name: str = "validation-job") -> str:
    return request.build_absolute_uri(reverse(name, args=[job.pk]))


def job_summary(request: HttpRequest, job: ValidationJob) -> dict[str, Any]:
    return {
        "id": str(job.pk),
        "url": job_url(request, job),
        "status": job.status,
        "schema": {"name": job.schema.name, "version": job.schema.version},
        "format": job.format,
        "output": job.output,
        "progress": {"processed": job.processed, "total": job.total},
        "summary": {"valid": job.valid_count, "invalid": job.invalid_count},
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
    }


def job_full(request: HttpRequest, job: ValidationJob) -> dict[str, Any]:
    """Everything a client polls for, with the first 100 errors."""
    return {
        **job_summary(request, job),
        "errors": job.first_errors,
        "errors_url": job_url(request, job, "validation-job-errors") if job.status == "succeeded" else None,
        "report_truncated": job.report_truncated,
        "error": job.error,
        "upload_bytes": job.upload_bytes,
        "attempts": job.attempts,
        "units": {"reserved": job.units_reserved, "refunded": job.refund_units if job.refunded_at else 0},
        "updated_at": _time(job.heartbeat_at or job.finished_at or job.created_at),
    }


def query_value(request: HttpRequest, name: str) -> str:
    """The one value of query parameter ``name`` ("" when absent). Raises
    InvalidRequest when it is repeated: which one was meant is a guess."""
    values = request.GET.getlist(name)
    if len(values) > 1:
        raise InvalidRequest(f"'{name}' is given more than once.", details={"field": name})
    return values[0] if values else ""


def _positive(request: HttpRequest, name: str, default: int, maximum: int) -> int:
    raw = query_value(request, name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidRequest(f"'{name}' must be a positive integer.", details={"field": name})
    return min(value, maximum)


def paginate(request: HttpRequest, rows: QuerySet[Any], render: Any) -> dict[str, Any]:
    """``{"results", "count", "page", "page_size", "next", "previous"}`` from
    ``?page=`` (1-based) and ``?page_size=`` (at most 100)."""
    page = _positive(request, "page", 1, 10**9)
    size = _positive(request, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    count = rows.count()
    start = (page - 1) * size
    results = [render(row) for row in rows[start : start + size]]

    def link(number: int) -> str:
        query = request.GET.copy()
        query["page"], query["page_size"] = str(number), str(size)
        return request.build_absolute_uri(f"{request.path}?{urlencode(sorted(query.items()))}")

    return {
        "results": results,
        "count": count,
        "page": page,
        "page_size": size,
        "next": link(page + 1) if start + size < count else None,
        "previous": link(page - 1) if page > 1 else None,
    }
