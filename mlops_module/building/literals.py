"""Config values as data: safe literals for Python, YAML, and Airflow's run-time Jinja.

Every value from a config reaches a generated file through one of these functions, never through
string formatting of its own. Each output is checked by parsing it back.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

_JINJA_OPEN = re.compile(r"\{(?=[{%#])")


def py(value: Any) -> str:
    """A Python literal that evaluates to ``value`` (str, int, bool, None, and lists/dicts of them)."""
    _check_plain(value)
    text = repr(value)
    if ast.literal_eval(text) != value:  # pragma: no cover - repr of plain data always round-trips
        raise ValueError(f"cannot write {value!r} as a Python literal")
    return text


def _check_plain(value: Any) -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float) and math.isfinite(value):
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_plain(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"dict keys must be strings, not {key!r}")
            _check_plain(item)
        return
    raise TypeError(f"{type(value).__name__} is not plain data")


def airflow_escape(text: str) -> str:
    """Text that Airflow's Jinja renders back to exactly ``text``.

    Only ``{{``, ``{%`` and ``{#`` open Jinja syntax; each such ``{`` becomes an expression that
    prints ``{``. Everything else passes through Jinja unchanged.
    """
    return _JINJA_OPEN.sub("{{ '{' }}", text)


def yaml_value(value: Any) -> str:
    """A YAML flow value for a manifest that Airflow's Jinja renders later: data, never structure."""
    _check_plain(value)
    return airflow_escape(_yaml_flow(value))


def _yaml_flow(value: Any) -> str:
    if isinstance(value, str):
        return yaml_quoted(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_quoted(k)}: {_yaml_flow(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _printable(code: int) -> bool:
    if 0x20 <= code <= 0x7E:
        return code not in (0x22, 0x5C)  # '"' and '\\' are escaped
    return (0xA0 <= code <= 0xFFFD and not (0xD800 <= code <= 0xDFFF) and code not in (0x2028, 0x2029, 0xFEFF)) \
        or code >= 0x10000


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def yaml_quoted(text: str) -> str:
    """A YAML double-quoted scalar: printable characters as they are, everything else escaped.

    Line breaks (including NEL, U+2028/9) are escaped, so no value can start a new key or document.
    """
    out = []
    for char in text:
        code = ord(char)
        if _printable(code):
            out.append(char)
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:  # pragma: no cover - astral characters are printable
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def airflow_expression(expression: str) -> str:
    """A YAML double-quoted scalar whose content Airflow computes at run time from ``expression``.

    Only the toolkit writes expressions. The run-time value may be anything (a number, a list,
    quotes, newlines or braces from a trigger's conf): ``string`` makes it text, ``tojson`` escapes
    that as a JSON string, and JSON string escapes are valid inside a YAML double-quoted scalar.
    (Characters beyond the BMP arrive as surrogate pairs; see ``local_operator`` for the local stand.)
    """
    if '"' in expression or "\\" in expression:
        raise ValueError("a toolkit expression must not contain double quotes or backslashes")
    return '"{{ ((' + expression + ") | string | tojson)[1:-1] }}\""
