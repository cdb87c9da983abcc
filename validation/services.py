"""Synchronous validation: one request, a schema and up to the plan's limit
of instances, answered inline. The batch path (``validation.runner``)
validates through the same :class:`~validation.engine.CompiledSchema`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from validation.engine import CompiledSchema
from validation.exceptions import InvalidRequest, TooManyInstances
from validation.schemas import inline_validator, schema_lookup, schema_validator


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


def payload_validate(*, payload: Payload) -> dict[str, Any]:
    """The answer: ``{"valid", "errors"}`` for one instance, or
    ``{"valid_count", "invalid_count", "results": [{"index", "valid",
    "errors"}]}`` for a list."""
    results = [payload.compiled.check(instance) for instance in payload.instances]
    if payload.single:
        return _result(*results[0])
    valid_count = sum(1 for valid, _, _ in results if valid)
    return {
        "valid_count": valid_count,
        "invalid_count": len(results) - valid_count,
        "results": [{"index": index, **_result(*result)} for index, result in enumerate(results)],
    }
