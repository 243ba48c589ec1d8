"""A strict YAML loader for files people write: data only, with the line and column of every node.

Why not ``yaml.safe_load``: it forgets positions (errors must say ``FILE:LINE:COL``), silently keeps the
last of two duplicate keys, reads ``on:``/``yes`` as booleans and ``2024-01-01`` as a date (YAML 1.1),
and expands alias bombs into memory. Here scalars follow the YAML 1.2 core schema, only the core tags
are accepted, duplicate keys are errors, and the expanded size of the document is bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from mlops_module.errors import ConfigError, Problem

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64

Key = str | int
PathT = tuple[Key, ...]

_CORE = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_CORE + t for t in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ, _MERGE = _CORE + "map", _CORE + "seq", _CORE + "merge"
_SCALAR_TAGS = (_STR, _INT, _FLOAT, _BOOL, _NULL)
MAX_INT = 2**63 - 1
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class _CoreResolver(BaseResolver):
    """YAML 1.2 core schema: ``on``, ``yes``, ``no`` stay strings; dates stay strings."""


_CoreResolver.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_CoreResolver.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_CoreResolver.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_CoreResolver.add_implicit_resolver(_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_CoreResolver.add_implicit_resolver(_MERGE, re.compile(r"^<<$"), ["<"])


class _Loader(Reader, Scanner, Parser, Composer, _CoreResolver):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _CoreResolver.__init__(self)


@dataclass(frozen=True)
class Document:
    """Plain data (dict/list/str/int/float/bool/None) plus where each node came from."""

    file: str
    data: Any
    positions: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    raw: dict[PathT, str] = field(default_factory=dict)

    def position(self, path: PathT, at_key: bool = False) -> tuple[int, int]:
        """Line and column of the value at ``path`` (or of its key), else of the nearest ancestor."""
        while path:
            if at_key and path in self.key_positions:
                return self.key_positions[path]
            if not at_key and path in self.positions:
                return self.positions[path]
            path, at_key = path[:-1], True
        return self.positions.get((), (1, 1))

    def problem(self, path: PathT, message: str, at_key: bool = False) -> Problem:
        line, col = self.position(path, at_key)
        return Problem(self.file, line, col, dotted(path), message)


def dotted(path: PathT) -> str:
    """``("spark", "conf", "spark.master")`` → ``spark.conf["spark.master"]``; the root is ``(root)``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += ("." if out else "") + part
        else:
            out += '["' + part.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return out or "(root)"


def load_file(path: Path, display: str | None = None) -> Document:
    """Read and parse ``path``; every problem becomes a :class:`ConfigError`, never a traceback."""
    name = display or str(path)
    try:
        with path.open("rb") as handle:  # bounded read: /dev/zero or a FIFO must not exhaust memory
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            size = path.stat().st_size if path.is_file() else len(raw)
            raise ConfigError([Problem(name, 1, 1, "(root)", f"file is {size} bytes; the limit is {MAX_BYTES}")])
    except FileNotFoundError:
        raise ConfigError([Problem(name, 1, 1, "(root)", "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(name, 1, 1, "(root)", "is a directory, expected a YAML file")]) from None
    except OSError as exc:
        raise ConfigError([Problem(name, 1, 1, "(root)", f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(name, 1, 1, "(root)", f"not UTF-8 text ({exc.reason})")]) from None
    return load_text(text, name)


def load_text(text: str, name: str = "<string>") -> Document:
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise ConfigError([Problem(name, 1, 1, "(root)", f"document is larger than {MAX_BYTES} bytes")])
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        if "expected a single document" in message:
            message = "only one YAML document is allowed (remove the '---' separator and what follows)"
        raise ConfigError([Problem(name, line, col, "(root)", f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, 1, 1, "(root)", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([Problem(name, 1, 1, "(root)", "nesting is too deep")]) from None
    finally:
        loader.dispose()
    if node is None:
        return Document(name, None, {(): (1, 1)})
    builder = _Builder(name)
    _check_size(node, name)
    data = builder.build(node, ())
    if builder.problems:
        raise ConfigError(builder.problems)
    return Document(name, data, builder.positions, builder.key_positions, builder.raw)


def _check_size(root: Node, name: str) -> None:
    """Bound the expanded node count (alias bombs) and reject recursive aliases, in linear time."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def children(node: Node) -> Iterator[Node]:
        if isinstance(node, SequenceNode):
            yield from node.value
        elif isinstance(node, MappingNode):
            for k, v in node.value:
                yield k
                yield v

    def size(node: Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if key in active:
            raise ConfigError([Problem(name, line, col, "(root)", "recursive alias: a node contains itself")])
        if depth > MAX_DEPTH:
            raise ConfigError([Problem(name, line, col, "(root)", f"nesting deeper than {MAX_DEPTH} levels")])
        active.add(key)
        total = 1 + sum(size(child, depth + 1) for child in children(node))
        active.discard(key)
        if total > MAX_NODES:
            raise ConfigError(
                [Problem(name, line, col, "(root)", f"document expands to more than {MAX_NODES} nodes (aliases?)")]
            )
        sizes[key] = total
        return total

    size(root, 0)


class _Builder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.positions: dict[PathT, tuple[int, int]] = {}
        self.key_positions: dict[PathT, tuple[int, int]] = {}
        self.raw: dict[PathT, str] = {}
        self.problems: list[Problem] = []

    def _problem(self, node: Node, path: PathT, message: str) -> None:
        self.problems.append(
            Problem(self.name, node.start_mark.line + 1, node.start_mark.column + 1, dotted(path), message)
        )

    def build(self, node: Node, path: PathT) -> Any:
        self.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                self._problem(node, path, f"YAML tag {node.tag!r} is not allowed: config values are plain data")
                return None
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _MAP:
                self._problem(node, path, f"YAML tag {node.tag!r} is not allowed: config values are plain data")
                return None
            return self._mapping(node, path)
        self._problem(node, path, "unsupported YAML node")
        return None

    def _mapping(self, node: MappingNode, path: PathT) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        seen: dict[str, int] = {}
        merges = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self._problem(key_node, path, "a key must be a plain string, not a list or a mapping")
                continue
            if key_node.tag not in _SCALAR_TAGS:
                self._problem(key_node, path, f"YAML tag {key_node.tag!r} is not allowed: config keys are plain text")
                continue
            key = key_node.value
            if key in seen:
                self._problem(
                    key_node, path + (key,), f"duplicate key {key!r} (first defined on line {seen[key]})"
                )
                continue
            seen[key] = key_node.start_mark.line + 1
            self.key_positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, path + (key,))
        # Merged values after the explicit ones, so positions point where a value was really written.
        for value_node in merges:
            for source in self._merge_sources(value_node, path):
                for k, v in source.items():
                    merged.setdefault(k, v)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out

    def _merge_sources(self, node: Node, path: PathT) -> list[dict[str, Any]]:
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        sources = []
        for item in nodes:
            value = self.build(item, path)
            if isinstance(value, dict):
                sources.append(value)
            else:
                self._problem(item, path, "a '<<' merge key takes a mapping or a list of mappings")
        return sources

    def _scalar(self, node: ScalarNode, path: PathT) -> Any:
        tag, value = node.tag, node.value
        self.raw.setdefault(path, value)
        if tag == _STR:
            bad = _CONTROL.search(value)
            if bad:
                self._problem(node, path, f"contains the control character {bad.group()!r}; write plain text")
                return None
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return value.lower() == "true"
        if tag == _INT:
            digits = value.lstrip("+-")
            if len(digits) > 20:
                self._problem(node, path, f"the integer {value[:24]}... is too large")
                return None
            try:
                number = int(value, 0) if digits[:2] in ("0o", "0x") else int(value)
            except ValueError:
                self._problem(node, path, f"{value!r} is not an integer")
                return None
            if abs(number) > MAX_INT:
                self._problem(node, path, f"the integer {value} is too large")
                return None
            return number
        if tag == _FLOAT:
            lowered = value.lower()
            if lowered.endswith(".inf"):
                return float("-inf") if lowered.startswith("-") else float("inf")
            if lowered == ".nan":
                return float("nan")
            try:
                return float(value)
            except ValueError:
                self._problem(node, path, f"{value!r} is not a number")
                return None
        if tag == _MERGE:
            return value
        self._problem(node, path, f"YAML tag {tag!r} is not allowed: config values are plain data")
        return None
