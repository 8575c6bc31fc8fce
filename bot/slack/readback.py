"""Reading byoi's own messages back from Slack, with their metadata, a page at a time.

After a crash byoi looks for a post whose answer it never heard: a thread reply in its thread
(conversations.replies, bot/slack/thread.py) or a run's card in its channel
(conversations.history, bot/slack/cardpost.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

CANNOT_READ = ("missing_scope", "not_allowed_token_type", "no_permission")
"""Slack's answers when the token may not read messages at all (a scope is missing)."""


def messages(read: Callable[..., Any], pages: int, **where: str) -> Iterator[dict[str, Any]]:
    """The messages ``read`` (a WebClient method) gives for ``where``, metadata included,
    following Slack's cursor for at most ``pages`` pages of 200."""
    cursor: str | None = None
    for _ in range(pages):
        page = read(include_all_metadata=True, cursor=cursor, limit=200, **where)
        yield from page.get("messages") or []
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return
