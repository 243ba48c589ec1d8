"""JSON Schema errors turned into messages a data scientist can act on, at the right line."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema

from mlops_module.errors import Problem
from mlops_module.spec.schema import HINTS
from mlops_module.spec.yaml_loader import Document, PathT

_TYPE_NAMES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the whole number {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5 if len(word) <= 4 else 0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_integer(_checker: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(_checker: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    """ECMA-262 semantics, as editors apply the schema: ``$`` is the very end, not "before a final newline"."""
    if not validator.is_type(instance, "string"):
        return
    if not re.search(pattern, instance) or (pattern.endswith("$") and instance.endswith("\n")):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# Stricter than Python's JSON Schema defaults: 2.0 is not an integer (it would render as "2.0"),
# NaN or infinity is not a number (every comparison with NaN is false: a gate would never fail),
# and a pattern ending in $ does not accept a trailing newline.
Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}
    ),
)


def schema_problems(
    doc: Document,
    schema: dict[str, Any],
    data: Any = None,
    origin: Callable[[PathT], PathT] | None = None,
    context: str = "",
) -> list[Problem]:
    """Every schema violation of ``data`` (default: the document's data) as a located problem.

    ``origin`` maps a path in ``data`` back to the path in the file it came from (merged views).
    """
    instance = doc.data if data is None else data
    where = origin or (lambda p: p)
    validator = Validator(schema)
    problems: list[Problem] = []
    for err in validator.iter_errors(instance):
        path: PathT = tuple(err.absolute_path)
        for sub_path, message in _messages(err, path, doc.raw.get(where(path))):
            at_key = err.validator in ("additionalProperties", "required") or "propertyNames" in err.schema_path
            problems.append(doc.problem(where(sub_path), context + message, at_key))
    return problems


def _messages(err: jsonschema.ValidationError, path: PathT, raw: str | None) -> list[tuple[PathT, str]]:
    kind, schema = err.validator, err.schema
    value: Any = err.instance
    rule: Any = err.validator_value
    if kind == "additionalProperties" and isinstance(value, dict) and isinstance(schema, dict):
        allowed = sorted(schema.get("properties", {}))
        fixed = schema.get("x-not-per-stand", {})
        out = []
        for key in sorted(set(value) - set(allowed)):
            if key in fixed:
                out.append((path + (key,), f"{key!r} can't be set per stand: {fixed[key]}"))
                continue
            hint = suggest(key, allowed)
            expected = f"; expected one of: {', '.join(allowed)}" if not hint else ""
            out.append((path + (key,), f"unknown key {key!r}{hint}{expected}"))
        return out
    if kind == "required":
        missing = [m for m in rule if not (isinstance(value, dict) and m in value)]
        return [(path, f"missing required key {m!r}") for m in missing]
    if kind == "type":
        wanted = rule if isinstance(rule, list) else [rule]
        names = " or ".join(_TYPE_NAMES.get(str(w), str(w)) for w in wanted)
        message = f"expected {names}, got {describe(value)}"
        if "string" in wanted and isinstance(value, int | float) and not isinstance(value, bool):
            shown = raw if raw is not None else str(value)
            message += f"; quote it: \"{shown}\""
            if isinstance(value, float) and math.isfinite(value) and shown != repr(value):
                message += f" (unquoted, {shown} reads as the number {value})"
        return [(path, message)]
    if kind == "pattern":
        pattern_hint = HINTS.get(str(rule))
        shown = repr(value) if isinstance(value, str) else describe(value)
        if "propertyNames" in err.schema_path:
            text = f"is not {pattern_hint}" if pattern_hint else "is not allowed"
            return [(path + (str(value),), f"key {value!r} {text}")]
        return [(path, f"{shown} is not {pattern_hint}" if pattern_hint else f"{shown} does not match {rule}")]
    if kind == "enum":
        choices = [str(c) for c in rule]
        hint = suggest(str(value), choices) if isinstance(value, str) else ""
        return [(path, f"{describe(value)} is not one of: {', '.join(choices)}{hint}")]
    if kind == "maxLength":
        return [(path, f"{value!r} is {len(value)} characters long; the limit is {rule}")]
    if kind in ("oneOf", "anyOf"):
        branches = [b.get("required", []) for b in rule if isinstance(b, dict)]
        keys = [k for b in branches for k in b]
        if keys and len(keys) == len(branches):
            quoted = ", ".join(repr(k) for k in keys)
            which = "exactly one" if kind == "oneOf" else "at least one"
            return [(path, f"give {which} of {quoted}")]
        return [(path, err.message)]
    if kind == "uniqueItems":
        return [(path, "items must be unique")]
    if kind == "minItems":
        return [(path, f"needs at least {rule} item(s)")]
    if kind == "minProperties":
        return [(path, f"needs at least {rule} entry(ies)")]
    return [(path, err.message)]
