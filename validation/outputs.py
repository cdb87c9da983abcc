"""What an error says beyond its message, and the specification's output formats.

- :func:`params`: an engine error's machine-readable parameters, named as
  clients of other validators know them (``missingProperty``,
  ``allowedValues``, ``limit``, ``additionalProperties``, ...), bounded: at
  most ``PARAM_ITEMS`` items of a list, ``VALUE_CHARS`` of a string and
  ``PARAM_BYTES`` in all (past that, ``"truncated": true``).
- :func:`branches`: for ``anyOf``/``oneOf``, why each branch failed (at most
  ``MAX_BRANCHES`` branches, ``ERRORS_PER_BRANCH`` errors each).
- :func:`standard`: the JSON Schema specification's output formats (2020-12
  core, section 12.4): ``flag`` (``{"valid"}``), ``basic`` (one output unit
  holding the flat list of failing keywords) and ``detailed`` (the units
  nested as the schema is, a unit with a single failing child collapsed
  into it). Each unit has ``keywordLocation`` (the evaluation path),
  ``absoluteKeywordLocation`` (the keyword's URI) and ``instanceLocation``;
  messages are bounded like Tollgate's own errors, and a ``detailed`` tree
  holds at most ``MAX_UNITS`` units (``"truncated": true`` past that).
"""

from __future__ import annotations

from typing import Any

from project import exactjson
from validation.bounds import MAX_ERRORS_PER_INSTANCE, VALUE_CHARS, clip

PARAM_ITEMS = 20
PARAM_BYTES = 2048
MAX_BRANCHES = 8
ERRORS_PER_BRANCH = 5
MAX_UNITS = 500
FORMATS = ("flag", "basic", "detailed")

# The engine's names of parameters -> the names clients know (ajv's).
_RENAMED = {
    "property": "missingProperty",
    "options": "allowedValues",
    "expected_value": "allowedValue",
    "unexpected": "additionalProperties",
    "types": "type",
}
_SKIPPED = ("context", "schema", "error")


def _bounded(value: Any) -> tuple[Any, bool]:
    if isinstance(value, list) and len(value) > PARAM_ITEMS:
        return [_bounded(item)[0] for item in value[:PARAM_ITEMS]], True
    if isinstance(value, str) and len(value) > VALUE_CHARS:
        return clip(value, VALUE_CHARS), True
    return value, False


def params(kind: Any) -> dict[str, Any]:
    """The parameters of an engine error of ``kind`` (a ValidationErrorKind)."""
    try:
        raw = kind.as_dict()
    except (AttributeError, TypeError, ValueError, OverflowError):  # a kind without (convertible) parameters
        return {}
    result: dict[str, Any] = {}
    truncated = False
    for key, value in raw.items():
        if key in _SKIPPED:
            continue
        value, cut = _bounded(value)
        truncated |= cut
        result[_RENAMED.get(key, key)] = value
    if len(exactjson.dumps(result)) > PARAM_BYTES:
        # Large values (a long enum of objects): their gist, as text.
        result = {key: clip(exactjson.dumps(value).decode(), VALUE_CHARS) for key, value in result.items()}
        truncated = True
    if truncated:
        result["truncated"] = True
    return result


def branches(kind: Any, describe: Any) -> list[list[dict[str, Any]]] | None:
    """Why each branch of an ``anyOf``/``oneOf`` failed, or None for other
    kinds (and for a ``oneOf`` that more than one branch passed)."""
    context = getattr(kind, "context", None)
    if not context:
        return None
    return [[describe(error, nested=True) for error in branch[:ERRORS_PER_BRANCH]] for branch in context[:MAX_BRANCHES]]


def _absolute(location: str, base: str) -> str:
    return location if "#" in location or ":" in location.split("/", 1)[0] else f"{base}#{location}"


def _unit(node: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "valid": bool(node.get("valid")),
        "keywordLocation": node.get("evaluationPath", ""),
        "absoluteKeywordLocation": _absolute(node.get("schemaLocation", ""), base),
        "instanceLocation": node.get("instanceLocation", ""),
    }


def _basic(evaluation: Any, base: str) -> dict[str, Any]:
    result: dict[str, Any] = {"valid": bool(evaluation.valid), "keywordLocation": "", "instanceLocation": ""}
    if evaluation.valid:
        return result
    errors: list[dict[str, Any]] = []
    for node in evaluation.list()["details"]:
        for _keyword, message in (node.get("errors") or {}).items():
            if len(errors) == MAX_ERRORS_PER_INSTANCE:
                result["truncated"] = True
                break
            errors.append({**_unit(node, base), "valid": False, "error": clip(str(message))})
    result["errors"] = errors or [{**_unit({}, base), "valid": False, "error": "The instance is not valid."}]
    return result


def _detailed(evaluation: Any, base: str) -> dict[str, Any]:
    budget = [MAX_UNITS]
    cut = [False]

    def convert(node: dict[str, Any]) -> dict[str, Any] | None:
        if node.get("valid") or budget[0] <= 0:
            if budget[0] <= 0:
                cut[0] = True
            return None
        budget[0] -= 1
        unit = _unit(node, base)
        own = [clip(str(message)) for message in (node.get("errors") or {}).values()]
        children = [child for child in (convert(item) for item in node.get("details") or []) if child is not None]
        if not own and len(children) == 1:
            return children[0]  # a unit with one failing child says no more than the child
        if len(own) == 1 and not children:
            unit["error"] = own[0]
        else:
            unit["errors"] = [{**unit, "error": message} for message in own] + children
            if not unit["errors"]:
                unit["error"] = "The instance is not valid."
                del unit["errors"]
        return unit

    root = evaluation.hierarchical()
    if root.get("valid"):
        return {"valid": True, "keywordLocation": "", "instanceLocation": ""}
    result = convert(root) or {**_unit(root, base), "error": "The instance is not valid."}
    if "errors" not in result:
        # The root is the schema itself: a single failure hangs below it.
        result = {**_unit(root, base), "valid": False, "errors": [result]}
    if cut[0]:
        result["truncated"] = True
    return result


def standard(validator: Any, instance: Any, output: str, base: str) -> dict[str, Any]:
    """The ``output`` format (:data:`FORMATS`) of ``instance``'s evaluation."""
    if output == "flag":
        return {"valid": bool(validator.is_valid(instance))}
    evaluation = validator.evaluate(instance)
    return _basic(evaluation, base) if output == "basic" else _detailed(evaluation, base)
