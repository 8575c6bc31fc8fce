"""Block Kit primitives shared by run cards, replies and alert cards, within Slack's limits."""

from __future__ import annotations

from typing import Any

from bot.views.marks import Marks

Block = dict[str, Any]
MAX_BLOCKS = 50
MAX_SECTION = 3000


def escape(text: str) -> str:
    """Slack's three control characters, so user text cannot mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int = MAX_SECTION) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text)}]}


def who(ref: str) -> str:
    """A user, Slack user group or @group as Slack shows it."""
    if ref.startswith(("U", "W")):
        return f"<@{ref}>"
    if ref.startswith("S"):
        return f"<!subteam^{ref}>"
    return escape(ref)


def _strong(text: str) -> str:
    return f"*{text}*"


def _code(text: str) -> str:
    return f"`{text}`"


MRKDWN = Marks(strong=_strong, code=_code, text=escape, person=who)
"""The view model's sentences as Slack's mrkdwn marks them."""
