"""YAML loading that remembers where each value came from, so errors can say `file:line`.

Anchors, aliases and merge keys (`<<: *production`) resolve as in any YAML loader; every
mapping and list becomes a ``Node`` that knows its file, line and dotted path. Hostile input is
refused with one clear problem: files that are not regular or larger than ``MAX_BYTES``,
nesting deeper than ``MAX_DEPTH``, aliases that expand past ``MAX_VALUES`` values or into
themselves, duplicate keys, and tags byoi does not know (the graph's bounds are in yamlgraph.py).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.yamlgraph import MAX_DEPTH, MAX_VALUES, Loader, Refused, check_expansion
from pipeline.errors import ByoiError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "ConfigError",
    "KeepText",
    "Node",
    "Problem",
    "load",
    "parse",
    "plain",
]
MAX_BYTES = 1024 * 1024
"""Largest byoi.yml or manifest byoi reads (1 MB); real ones are a few kilobytes."""
_YAML = "tag:yaml.org,2002:"
_MERGE = _YAML + "merge"
_KNOWN_TAGS = frozenset(
    _YAML + name for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)
_NUMBER_TAGS = frozenset(_YAML + name for name in ("int", "float", "timestamp"))


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


class ConfigError(ByoiError):
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
    anchors: dict[str, str] = field(default_factory=dict)
    """Anchor (``&name``) written on a child, by key; only anchored children appear."""
    aliased: frozenset[str] = frozenset()
    """On the root: every anchor that an alias or merge key refers to."""

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


KeepText = Callable[[str], bool]


def _never(_key: str) -> bool:
    return False


def load(path: Path, display: str | None = None, keep_text: KeepText = _never) -> Node:
    """Parse one YAML file into plain data wrapped in Nodes; raises ConfigError.

    Numbers under keys for which ``keep_text`` is true stay the text as written (`2.10`, never
    the float 2.1)."""
    name = display or str(path)
    data = _read(path, name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise ConfigError(
            [Problem(name, line, "", f"not UTF-8 text (byte 0x{byte} cannot be decoded)")]
        ) from None
    return parse(text, name, keep_text)


def _read(path: Path, name: str) -> bytes:
    """The file's bytes, refusing FIFOs, devices and directories before anything blocks."""

    def refuse(message: str) -> ConfigError:
        return ConfigError([Problem(name, 0, "", message)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise refuse("file not found") from None
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise refuse(f"is {kind}; byoi reads configuration only from regular files")
        data = os.read(fd, MAX_BYTES + 1)
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise refuse(f"is larger than {MAX_BYTES // 1024 // 1024} MB, byoi's limit for a file")
    return data


def parse(text: str, name: str, keep_text: KeepText = _never) -> Node:
    data = text.encode("utf-8", "surrogatepass")
    try:
        loader = Loader(data)
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_problem(exc, data, name)]) from None
    try:
        root = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_problem(exc, data, name)]) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        detail = exc.problem
        if detail and "maximum nesting depth" in detail:  # libyaml's own limit, far above ours
            detail = f"nested more than {MAX_DEPTH} levels deep"
        if exc.context and "duplicate anchor" in exc.context and exc.context_mark:
            anchor = exc.context.split("'")[1] if "'" in exc.context else "?"
            detail = (
                f"anchor &{anchor} is defined twice (lines {exc.context_mark.line + 1} and {line})"
            )
        raise ConfigError([Problem(name, line, "", f"invalid YAML: {detail}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, 0, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if root is None:
        return Node({}, name, 1, "")
    try:
        check_expansion(root, loader.anchor_of, bool(loader.aliased))
    except Refused as exc:
        raise ConfigError([Problem(name, exc.line, "", exc.message)]) from None
    converter = _Converter(loader, name, keep_text)
    value = converter.convert(root, "")
    if converter.problems:
        raise ConfigError(sorted(converter.problems, key=lambda p: p.line))
    if not isinstance(value, Node):
        value = Node(value, name, root.start_mark.line + 1, "")
    value.aliased = frozenset(loader.aliased)
    return value


def _reader_problem(exc: yaml.reader.ReaderError, data: bytes, name: str) -> Problem:
    line = data.count(b"\n", 0, max(0, exc.position)) + 1
    char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
    return Problem(name, line, "", f"invalid YAML: character {char} is not allowed")


class _Converter:
    """Composed nodes to Nodes and plain values; collects duplicate keys and unknown tags."""

    def __init__(self, loader: Loader, name: str, keep_text: KeepText) -> None:
        self.loader = loader
        self.name = name
        self.keep_text = keep_text
        self.problems: list[Problem] = []
        self._reported: set[int] = set()

    def _problem(self, node: yaml.Node, path: str, message: str) -> None:
        self.problems.append(Problem(self.name, node.start_mark.line + 1, path, message))

    def _tag_ok(self, node: yaml.Node, path: str) -> bool:
        if node.tag in _KNOWN_TAGS:
            return True
        tag = str(node.tag)
        shown = "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag
        self._problem(
            node,
            path,
            f"unknown tag {shown}: byoi reads plain maps, lists, strings, numbers and booleans",
        )
        return False

    def convert(self, node: yaml.Node, path: str, key: str = "") -> Any:
        if not self._tag_ok(node, path):
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            result = Node([], self.name, node.start_mark.line + 1, path)
            for index, item in enumerate(node.value):
                result.value.append(self.convert(item, f"{path}[{index}]"))
                result.lines[str(index)] = item.start_mark.line + 1
            return result
        plain_scalar = isinstance(node, yaml.ScalarNode) and not node.style
        if plain_scalar and node.tag in _NUMBER_TAGS and self.keep_text(key):
            return str(node.value)
        return self.loader.construct_object(node, deep=True)

    def _key(self, node: yaml.Node, path: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self._problem(node, path, "a key must be a plain value, not a map or a list")
            return None
        if not self._tag_ok(node, path):
            return None
        return str(self.loader.construct_object(node))

    def _mapping(self, node: yaml.MappingNode, path: str) -> Node:
        result = Node({}, self.name, node.start_mark.line + 1, path)
        merged, own = self._pairs(node, result)
        for key, key_node, value_node in merged:
            if key not in result.value:  # the first merge source that has a key wins
                self._put(result, key, key_node, value_node)
        for key, key_node, value_node in own:
            self._put(result, key, key_node, value_node)
        return result

    def _put(self, result: Node, key: str, key_node: yaml.Node, value_node: yaml.Node) -> None:
        result.value[key] = self.convert(value_node, result.child_path(key), key)
        result.lines[key] = key_node.start_mark.line + 1
        anchor = self.loader.anchor_of.get(id(value_node))
        if anchor is not None:
            result.anchors[key] = anchor

    def _pairs(self, node: yaml.MappingNode, where: Node) -> tuple[list[_Pair], list[_Pair]]:
        """(merged, own) entries: those from `<<` sources, in order, and those written here.

        A key written twice is a problem (said once, whichever way the map is reached)."""
        merged: list[_Pair] = []
        own: list[_Pair] = []
        first: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = "<<" if key_node.tag == _MERGE else self._key(key_node, where.path)
            if key is None:
                continue
            if key in first:
                self._duplicate(where, key, first[key], key_node)
                continue
            first[key] = key_node
            if key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node, where))
            else:
                own.append((key, key_node, value_node))
        return merged, own

    def _duplicate(self, where: Node, key: str, first: yaml.Node, again: yaml.Node) -> None:
        if id(again) in self._reported:
            return
        self._reported.add(id(again))
        lines = f"lines {first.start_mark.line + 1} and {again.start_mark.line + 1}"
        self._problem(again, where.child_path(key), f"is given twice ({lines}); keep one")

    def _merge_sources(self, value: yaml.Node, where: Node) -> list[_Pair]:
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        pairs: list[_Pair] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self._problem(
                    source,
                    where.path,
                    "a merge key (<<) takes a map or a list of maps, like <<: *base",
                )
                continue
            merged, own = self._pairs(source, where)
            pairs.extend(own + merged)  # a source's own keys win over what it merges
        return pairs


_Pair = tuple[str, yaml.Node, yaml.Node]


def plain(value: Any) -> Any:
    """Strip Nodes, giving plain dicts and lists (for values kept as they are)."""
    if isinstance(value, Node):
        value = value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
