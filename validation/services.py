"""Synchronous validation: one request, a schema and up to the plan's limit
of instances, answered inline. The batch path (``validation.runner``)
validates through the same :class:`~validation.engine.CompiledSchema` and the
same guard (``validation.guard``).

Bounds: instances nest at most ``VALIDATION_MAX_DEPTH`` levels and inline
schemas ``VALIDATION_MAX_SCHEMA_DEPTH`` (400 ``too_deep``, before anything is
charged); the validation of one request takes at most
``VALIDATION_SYNC_TIME_LIMIT`` seconds (422 ``validation_timeout``; the units
stay charged, as the work was done); its errors take at most
``validation.bounds.RESPONSE_ERROR_BYTES``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from validation import guard
from validation.bounds import RESPONSE_ERROR_BYTES
from validation.depth import depth_message, max_depth, too_deep
from validation.engine import CompiledSchema
from validation.evaluator import LIST
from validation.exceptions import InvalidRequest, TooDeep, TooManyInstances, ValidationCrashed, ValidationTimeout
from validation.outputs import FORMATS
from validation.schemas import inline_validator, schema_lookup, schema_validator

log = logging.getLogger("tollgate.validation")

# Seconds the validation of one synchronous request may take, all instances
# together: far above any sane schema (milliseconds), far below gunicorn's 28 s.
DEFAULT_SYNC_TIME_LIMIT = 2.0


@dataclass(frozen=True, slots=True)
class Payload:
    """A parsed validation request: the compiled schema, the instances, and
    whether the caller sent one ``instance`` (not a list)."""

    compiled: CompiledSchema
    instances: list[Any]
    single: bool


def payload_parse(*, account_id: int, body: Any, max_instances: int) -> Payload:
    """Read ``{"schema", "instance"}`` or ``{"schema", "instances": [...]}``.
    ``schema`` is ``name/version`` (or ``name/latest``) of a registered
    schema, or an inline schema. Raises InvalidRequest, TooManyInstances,
    SchemaNotFound, InvalidSchema. Nothing is charged here."""
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    if "schema" not in body:
        raise InvalidRequest("'schema' is required: 'name/version' or an inline schema.", details={"field": "schema"})
    if ("instance" in body) == ("instances" in body):
        raise InvalidRequest("Send exactly one of 'instance' and 'instances'.")
    single = "instance" in body
    instances = [body["instance"]] if single else body["instances"]
    if not isinstance(instances, list):
        raise InvalidRequest("'instances' must be an array.", details={"field": "instances"})
    if not instances:
        raise InvalidRequest("'instances' is empty.", details={"field": "instances"})
    if len(instances) > max_instances:
        raise TooManyInstances(
            f"At most {max_instances} instances per request on this plan; send more as a batch job.",
            details={"max_sync_instances": max_instances, "instances": len(instances)},
        )
    limit = max_depth()
    for index, instance in enumerate(instances):
        if isinstance(instance, (dict, list)) and too_deep(instance, limit):
            field = "instance" if single else f"instances/{index}"
            raise TooDeep(depth_message(limit), details={"field": field, "max_depth": limit})
    reference = body["schema"]
    if isinstance(reference, str):
        compiled = schema_validator(schema=schema_lookup(account_id=account_id, reference=reference))
    elif isinstance(reference, (dict, bool)):
        compiled = inline_validator(account_id=account_id, document=reference)
    else:
        raise InvalidRequest("'schema' must be 'name/version' or a schema object.", details={"field": "schema"})
    return Payload(compiled, instances, single)


def _result(valid: bool, errors: list[dict[str, Any]], truncated: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"valid": valid, "errors": errors}
    if truncated:
        result["errors_truncated"] = True
    return result


def sync_time_limit() -> float:
    return float(getattr(settings, "VALIDATION_SYNC_TIME_LIMIT", DEFAULT_SYNC_TIME_LIMIT))


def output_format(value: str) -> str:
    """The answer's format from ``?output=`` ("" is Tollgate's own list).
    Raises InvalidRequest for another value."""
    if value in ("", LIST):
        return LIST
    if value not in FORMATS:
        raise InvalidRequest(f"'output' must be one of {', '.join((LIST, *FORMATS))}.", details={"field": "output"})
    return value


def payload_validate(*, payload: Payload, output: str = LIST) -> dict[str, Any]:
    """The answer: ``{"valid", "errors"}`` for one instance, or
    ``{"valid_count", "invalid_count", "results": [{"index", "valid",
    "errors"}]}`` for a list. With ``output`` ``flag``, ``basic`` or
    ``detailed``, each instance's answer is the specification's output
    structure instead (``validation.outputs``). Raises ValidationTimeout and
    ValidationCrashed (422)."""
    seconds = sync_time_limit()
    try:
        results = guard.for_this_thread(seconds).check(
            payload.compiled, payload.instances, seconds=seconds, response_bytes=RESPONSE_ERROR_BYTES, output=output
        )
    except guard.Timeout:
        log.warning("A validation of %s instance(s) ran past %s s and was stopped", len(payload.instances), seconds)
        raise ValidationTimeout(details={"seconds": seconds}) from None
    except guard.Crashed:
        log.error("The validator stopped while validating %s instance(s)", len(payload.instances))
        raise ValidationCrashed() from None
    shape = _result if output == LIST else _structure
    if payload.single:
        return shape(*results[0])
    valid_count = sum(1 for valid, _, _ in results if valid)
    return {
        "valid_count": valid_count,
        "invalid_count": len(results) - valid_count,
        "results": [{"index": index, **shape(*result)} for index, result in enumerate(results)],
    }


def _structure(valid: bool, structure: Any, truncated: bool) -> dict[str, Any]:
    return dict(structure)
