"""Wording both front ends share: the shell prints it, Slack puts it into Block Kit."""

from __future__ import annotations

COMMAND = "/byoi"


def usage_line(usage: str) -> str:
    """How to type a command, from the pipeline's usage line (which names the command only)."""
    return f"{COMMAND} {usage}"
