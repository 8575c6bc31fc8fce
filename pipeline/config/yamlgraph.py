"""The composed YAML graph, bounded: libyaml's parser under a depth limit that remembers anchors
and the aliases used, and the check that refuses aliases that loop or expand too far.

It knows nothing of files or problems: a refusal carries a line and a message, which
``yamlsrc`` turns into a ``Problem``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from pipeline.errors import ByoiError

MAX_VALUES = 100_000
"""Most keys and values a file may hold once aliases and merge keys are expanded."""
MAX_DEPTH = 64
"""Deepest nesting of maps and lists, aliases included."""


class Refused(ByoiError):
    """The graph is refused before anything is built from it."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1
        self.message = message


if yaml.__with_libyaml__:
    from yaml._yaml import CParser as _Parser
else:  # PyYAML built without libyaml: the same events, ten times slower

    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        def __init__(self, stream: bytes) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class Loader(
    yaml.composer.Composer, _Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver
):
    """libyaml's parser under PyYAML's composer, bounded in depth, remembering anchors and the
    aliases used (libyaml's own composer would hide both)."""

    def __init__(self, stream: bytes) -> None:
        _Parser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        yaml.composer.Composer.__init__(self)
        self.depth = 0
        self.anchor_of: dict[int, str] = {}
        self.aliased: set[str] = set()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event: Any = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor is not None:
                self.aliased.add(event.anchor)
            return _composed(super().compose_node(parent, index), event)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark
                )
            node = _composed(super().compose_node(parent, index), event)
        finally:
            self.depth -= 1
        if event.anchor is not None:
            self.anchor_of[id(node)] = event.anchor
        return node


def check_expansion(root: yaml.Node, anchor_of: dict[int, str], aliased: bool) -> None:
    """Refuse, before building anything, a graph whose aliases loop or expand too far.

    The composed graph shares one node per anchor, so it stays as small as the text; sizes are
    counted per node once (memoised), which makes this linear even for an alias bomb."""
    too_many = (
        f"invalid YAML: aliases expand to more than {MAX_VALUES:,} keys and values (byoi's limit)"
        if aliased
        else f"holds more than {MAX_VALUES:,} keys and values (byoi's limit)"
    )
    sizes: dict[int, tuple[int, int]] = {}
    """Per node: values below it once expanded, and its height."""
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in open_nodes:
            anchor = anchor_of.get(key, "?")
            raise Refused(node, f"invalid YAML: recursive alias: &{anchor} contains *{anchor}")
        if key not in sizes:
            open_nodes.add(key)
            sizes[key] = _measure(node, depth, size, lambda: Refused(node, too_many))
            open_nodes.discard(key)
        if depth + sizes[key][1] > MAX_DEPTH:
            raise Refused(node, f"invalid YAML: nested more than {MAX_DEPTH} levels deep")
        return sizes[key]

    size(root, 0)


def _measure(
    node: yaml.Node,
    depth: int,
    size: Callable[[yaml.Node, int], tuple[int, int]],
    too_many: Callable[[], Refused],
) -> tuple[int, int]:
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    total, height = 1, 0
    for child in children:
        below, child_height = size(child, depth + 1)
        total += below
        height = max(height, child_height + 1)
        if total > MAX_VALUES:
            raise too_many()
    return total, height


def _composed(node: yaml.Node | None, event: Any) -> yaml.Node:
    """PyYAML's composer gives None only past the end of a stream, where no node is asked for."""
    if node is None:
        raise yaml.composer.ComposerError(None, None, "expected a node", event.start_mark)
    return node
