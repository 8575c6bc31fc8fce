"""YAML loading that remembers where each value came from, so errors can say `file:line`.

Anchors, aliases and merge keys (`<<: *production`) resolve as in any YAML loader; every
mapping and list becomes a ``Node`` that knows its file, line and dotted path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, printed as ``file:line: key: message``."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.key}: " if self.key else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class ConfigError(Exception):
    """The configuration has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Node:
    """A mapping or list from a YAML file, with its location."""

    value: Any
    file: str
    line: int
    path: str
    lines: dict[str, int] = field(default_factory=dict)
    """Line of each child, by key (mappings) or index as a string (lists)."""

    def child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else str(key)

    def line_of(self, key: str | int) -> int:
        return self.lines.get(str(key), self.line)

    def problem(self, key: str | int | None, message: str) -> Problem:
        if key is None:
            return Problem(self.file, self.line, self.path, message)
        return Problem(self.file, self.line_of(key), self.child_path(key), message)


def load(path: Path, display: str | None = None) -> Node:
    """Parse one YAML file into plain data wrapped in Nodes; raises ConfigError."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(name, 0, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, 0, "", f"cannot read: {exc}")]) from None
    return parse(text, name)


def parse(text: str, name: str) -> Node:
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(0, exc.position)) + 1
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise ConfigError(
            [Problem(name, line, "", f"invalid YAML: character {char} is not allowed")]
        ) from None

    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError([Problem(name, line, "", f"invalid YAML: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, 0, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()

    if root is None:
        return Node({}, name, 1, "")
    try:
        value = _convert(root, loader, name, "")
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError([Problem(name, line, "", f"invalid YAML: {exc.problem}")]) from None
    if not isinstance(value, Node):
        return Node(value, name, root.start_mark.line + 1, "")
    return value


def _convert(node: yaml.Node, loader: yaml.SafeLoader, name: str, path: str) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys in place
        result = Node({}, name, line, path)
        for key_node, value_node in node.value:
            key = str(loader.construct_object(key_node, deep=True))
            child = f"{path}.{key}" if path else key
            result.value[key] = _convert(value_node, loader, name, child)
            result.lines[key] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        result = Node([], name, line, path)
        for index, item in enumerate(node.value):
            result.value.append(_convert(item, loader, name, f"{path}[{index}]"))
            result.lines[str(index)] = item.start_mark.line + 1
        return result
    return loader.construct_object(node, deep=True)


def plain(value: Any) -> Any:
    """Strip Nodes, giving plain dicts and lists (for values kept as they are)."""
    if isinstance(value, Node):
        value = value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
