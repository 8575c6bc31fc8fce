"""One Slack message per run, edited in place: the Notifier for Slack.

Edits are coalesced to at most one per ``interval`` seconds per run; the newest state always
lands (a failed edit is retried on the next tick). Thread replies are posted only for a failed
server and for the final summary, which is broadcast to the channel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import messages, rollblocks
from bot.blocks import section
from pipeline import measured
from pipeline.models import Run, RunKind, ServerStatus
from pipeline.store import Store

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
ChannelOf = Callable[[Run], str | None]


class Poster:
    """chat.postMessage, at most one post per ``interval`` seconds per channel."""

    def __init__(self, client: WebClient, interval: float = 1.0) -> None:
        self.client = client
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, channel: str, **kwargs: object) -> dict[str, object]:
        with self._lock:
            wait = self._last.get(channel, 0.0) + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last[channel] = time.monotonic()
        response = self.client.chat_postMessage(channel=channel, **kwargs)  # type: ignore[arg-type]
        return dict(response.data) if isinstance(response.data, dict) else {}


class Cards:
    def __init__(
        self,
        client: WebClient,
        store: Store,
        clock: Clock,
        channel_of: ChannelOf,
        *,
        interval: float = 2.0,
        post_interval: float = 1.0,
        poster: Poster | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        self.channel_of = channel_of
        self.interval = interval
        self._post = poster or Poster(client, post_interval)

        self._pending: dict[int, Run] = {}
        self._last_edit: dict[int, float] = {}
        self._tell: dict[int, Callable[[str], object]] = {}
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # Notifier ---------------------------------------------------------------------------

    def run_changed(self, run: Run) -> None:
        """Queue the run's card; the flusher thread posts or edits it, so callers never wait."""
        with self._cv:
            self._pending[run.id] = run
            self._cv.notify()

    def on_post_error(self, run_id: int, tell: Callable[[str], object]) -> None:
        """Who to tell if the card cannot be posted at all (byoi is not in the channel)."""
        with self._cv:
            self._tell[run_id] = tell

    # flushing ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="slack-cards", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Flush every pending edit (ignoring the interval), then stop the flusher."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            self._flush(force=True)

    def _loop(self) -> None:
        while True:
            with self._cv:
                if self._stopping:
                    return
                self._cv.wait(0.2)
            try:
                self._flush(force=False)
            except Exception:  # the flusher must outlive any one bad card
                log.exception("showing run cards failed")

    def _flush(self, *, force: bool) -> None:
        now = time.monotonic()
        with self._cv:
            due = [
                run
                for run_id, run in self._pending.items()
                if force or now - self._last_edit.get(run_id, 0.0) >= self.interval
            ]
            for run in due:
                del self._pending[run.id]
        for run in due:
            try:
                self._show(run)
            except SlackApiError as exc:
                if exc.response.get("error") in ("not_in_channel", "channel_not_found"):
                    self._cannot_post(run, str(exc.response.get("error")))
                    continue
                self._retry_later(run, exc)
            except (SlackClientError, OSError) as exc:
                self._retry_later(run, exc)

    def _retry_later(self, run: Run, exc: Exception) -> None:
        log.warning("could not show the card of run %s (will retry): %s", run.id, exc)
        with self._cv:
            self._pending.setdefault(run.id, run)
        time.sleep(0.2)

    def _cannot_post(self, run: Run, error: str) -> None:
        log.warning("cannot post the card of run %s: %s", run.id, error)
        with self._cv:
            tell = self._tell.pop(run.id, None)
        if tell is not None:
            tell(
                f"Run {run.id} was created, but byoi cannot post in this channel ({error}): "
                "invite it with `/invite @byoi`."
            )

    def _show(self, run: Run) -> None:
        stored = self.store.run(run.id) or run
        if stored.message_ts:
            self._edit(stored)
            return
        channel = self.channel_of(stored)
        if channel is None:
            return  # nowhere to show it (a run from the shell with no channel)
        response = self._post(channel, text=self._fallback(stored), blocks=self._card(stored))
        self.store.set_message(run.id, str(response.get("channel", channel)), str(response["ts"]))
        self._last_edit[run.id] = time.monotonic()
        posted = self.store.run(run.id)
        if posted is not None:
            self._thread_replies(posted)  # a run can end before its card is first shown

        with self._cv:
            self._tell.pop(run.id, None)

    def _edit(self, stored: Run) -> None:
        """Edit the card of ``stored``, a run just read from the store."""
        if not stored.message_ts or not stored.channel:
            return
        self.client.chat_update(
            channel=stored.channel,
            ts=stored.message_ts,
            text=self._fallback(stored),
            blocks=self._card(stored),
        )
        self._last_edit[stored.id] = time.monotonic()
        self._thread_replies(stored)

    def _card(self, run: Run) -> list[dict[str, object]]:
        options = measured.options_of(self.store, run.id) if run.kind == RunKind.ROLL else None
        return messages.run_card(run, self.clock(), options)

    def _thread_replies(self, run: Run) -> None:
        """A reply per failed server and one broadcast summary, each posted once, ever."""
        assert run.channel and run.message_ts
        told = self.store.replies(run.id)
        for server in run.servers:
            what = f"failure:{server.slot}"
            if server.status == ServerStatus.FAILED and what not in told:
                self._post(
                    run.channel, text=messages.failure_text(run, server), thread_ts=run.message_ts
                )
                self.store.record_reply(run.id, what, self.clock())
        finished = run.servers and any(s.status.finished for s in run.servers)
        if run.state.terminal and finished and "summary" not in told:
            summary = messages.run_summary(run)
            offer = rollblocks.roll_offer(run, measured.image_of(self.store, run.id))
            self._post(
                run.channel,
                text=summary,
                blocks=[section(summary), *offer] if offer else None,
                thread_ts=run.message_ts,
                reply_broadcast=True,
            )
            self.store.record_reply(run.id, "summary", self.clock())

    @staticmethod
    def _fallback(run: Run) -> str:
        return (
            f"Run {run.id}: {messages.VERB[run.kind]} {run.app}/{run.env} "
            f"{run.current} → {run.desired} ({run.state.value.replace('_', ' ')})"
        )
