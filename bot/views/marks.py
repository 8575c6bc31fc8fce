"""How a surface marks words inside a sentence: as they are for the shell, mrkdwn for Slack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Mark = Callable[[str], str]


def plain(text: str) -> str:
    return text


@dataclass(frozen=True)
class Marks:
    strong: Mark = plain
    """A word to stand out: an app's environment, a run's state."""
    code: Mark = plain
    """A name to show as typed: an image, a server, a command."""
    text: Mark = plain
    """Text people or providers wrote (Slack escapes it so it cannot mention or link)."""
    person: Mark = plain
    """A user or group (Slack mentions it)."""


PLAIN = Marks()
