"""Who asks: the person behind a command or a click."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Caller:
    """Who is typing, the user groups they belong to, and where (a channel id or None)."""

    user: str
    groups: frozenset[str] = field(default_factory=frozenset)
    channel: str | None = None
