"""Posting to Slack at most once per second per channel (Slack's limit for chat.postMessage)."""

from __future__ import annotations

import threading
import time

from slack_sdk import WebClient

from pipeline.errors import ByoiError


class ChannelBusy(ByoiError):
    """The channel may take no post yet (at most one per second): try again later."""


class Poster:
    """chat.postMessage, at most one post per ``interval`` seconds per channel.

    A caller that must wait sleeps outside the lock, so a busy channel never holds up a post to
    another one; ``now`` never waits at all (the card flusher comes back later instead)."""

    def __init__(self, client: WebClient, interval: float = 1.0) -> None:
        self.client = client
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, channel: str) -> float:
        """Seconds until the next post to ``channel`` may go (0 when it may go now)."""
        with self._lock:
            return max(0.0, self._last.get(channel, 0.0) + self.interval - time.monotonic())

    def __call__(self, channel: str, **kwargs: object) -> dict[str, object]:
        with self._lock:  # the next free turn in the channel is this post's
            turn = max(time.monotonic(), self._last.get(channel, 0.0) + self.interval)
            self._last[channel] = turn
        delay = turn - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return self._send(channel, kwargs)

    def now(self, channel: str, **kwargs: object) -> dict[str, object]:
        """Post at once, or raise ChannelBusy if the channel must wait for its next post."""
        with self._lock:
            now = time.monotonic()
            if now < self._last.get(channel, 0.0) + self.interval:
                raise ChannelBusy(channel)
            self._last[channel] = now
        return self._send(channel, kwargs)

    def _send(self, channel: str, kwargs: dict[str, object]) -> dict[str, object]:
        response = self.client.chat_postMessage(channel=channel, **kwargs)  # type: ignore[arg-type]
        return dict(response.data) if isinstance(response.data, dict) else {}
