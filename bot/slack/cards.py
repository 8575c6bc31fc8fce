"""One Slack message per run, edited in place: the Notifier for Slack.

Edits are coalesced to at most one per ``interval`` seconds per run; the newest state always
lands (a failed edit is retried on the next tick). The thread gets a reply per step phase,
edited along with the card (unless ``thread_updates: failures``), a reply per failed server,
and the final summary, which is broadcast to the channel. What each card shows is recorded in
the store (through pipeline/services/display.py), and every ``resync_every`` seconds (and on
``resync``) the cards behind the store are queued again, so a restart loses no edit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.blocks import messages
from bot.slack.blocks import roll as rollblocks
from bot.slack.blocks.kit import section
from bot.slack.thread import PhaseReplies
from pipeline.config.model import ThreadUpdates
from pipeline.domain.models import Run, RunKind, ServerStatus
from pipeline.ports import Clock
from pipeline.services.display import Display

log = logging.getLogger(__name__)
ChannelOf = Callable[[Run], str | None]
ThreadUpdatesOf = Callable[[Run], ThreadUpdates]


class Poster:
    """chat.postMessage, at most one post per ``interval`` seconds per channel."""

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
        display: Display,
        clock: Clock,
        channel_of: ChannelOf,
        *,
        interval: float = 2.0,
        post_interval: float = 1.0,
        poster: Poster | None = None,
        resync_every: float = 30.0,
        thread_updates_of: ThreadUpdatesOf = lambda _: ThreadUpdates.PHASES,
    ) -> None:
        self.client = client
        self.display = display
        self.clock = clock
        self.channel_of = channel_of
        self.interval = interval
        self.resync_every = resync_every
        self.post = poster or Poster(client, post_interval)
        self._stop_deadline = 0.0
        self.thread_updates_of = thread_updates_of
        self.phases = PhaseReplies(client, self.post, display, clock)

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
            if run_id not in self._last_edit:  # posted already: nobody will need telling
                self._tell[run_id] = tell

    # flushing ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="slack-cards", daemon=True)
        self._thread.start()

    def resync(self) -> int:
        """Queue every card that is behind the store; returns how many."""
        behind = self.display.runs_behind()
        for run in behind:
            self.run_changed(run)
        return len(behind)

    def stop(self, timeout: float = 30) -> bool:
        """Flush pending edits (ignoring the interval) for at most ``timeout`` seconds, then
        stop the flusher; True if nothing is left. What is left, the next start re-queues."""
        with self._cv:
            self._stop_deadline = time.monotonic() + timeout
            self._stopping = True
            self._cv.notify()
        if self._thread is None:
            self._last_edits()
        else:
            self._thread.join(timeout)
        with self._cv:
            left = len(self._pending)
        if self._thread is not None and self._thread.is_alive():
            log.warning("Slack still holds up a card edit; the next start shows what is left")
            return False
        if left:
            log.warning("stopped with %d card edit(s) not shown; the next start shows them", left)
            return False
        return True

    def _loop(self) -> None:
        next_resync = time.monotonic() + self.resync_every
        while True:
            with self._cv:
                if self._stopping:
                    break
                self._cv.wait(0.2)
            try:
                self._flush(force=False)
                if time.monotonic() >= next_resync:
                    next_resync = time.monotonic() + self.resync_every
                    self.resync()
            except Exception:  # the flusher must outlive any one bad card
                log.exception("showing run cards failed")
        self._last_edits()

    def _last_edits(self) -> None:
        while self._pending and time.monotonic() < self._stop_deadline:
            try:
                self._flush(force=True)
            except Exception:
                log.exception("showing run cards failed")
                return

    def _flush(self, *, force: bool) -> None:
        now = time.monotonic()
        with self._cv:
            # A card whose channel must wait for its next post waits in the queue, so one busy
            # channel never holds up the others (the flusher used to sleep for it).
            due = [
                run
                for run_id, run in self._pending.items()
                if force
                or (
                    now - self._last_edit.get(run_id, 0.0) >= self.interval
                    and self.post.wait(run.channel or self.channel_of(run) or "") == 0
                )
            ]
            for run in due:
                del self._pending[run.id]
            # Edit times matter for one interval; a process lives for months (bench/soak.py).
            if len(self._last_edit) > 1000:
                self._last_edit = {
                    k: t for k, t in self._last_edit.items() if now - t < 60 or k in self._pending
                }
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
        self.display.run_card_unpostable(run.id, self.clock())
        with self._cv:
            tell = self._tell.pop(run.id, None)
        if tell is not None:
            tell(
                f"Run {run.id} was created, but byoi cannot post in this channel ({error}): "
                "invite it with `/invite @byoi`."
            )

    def _show(self, run: Run) -> None:
        stored = self.display.run(run.id) or run
        if stored.shown_as:
            self._edit(stored)
            return
        channel = self.channel_of(stored)
        if channel is None:
            return  # nowhere to show it (a run from the shell with no channel)
        response = self.post(channel, text=self._fallback(stored), blocks=self._card(stored))
        self.display.run_shown(run.id, str(response.get("channel", channel)), str(response["ts"]))
        self._last_edit[run.id] = time.monotonic()
        posted = self.display.run(run.id)
        due = posted is not None and self._replies_due(posted)
        if posted is not None and due:
            # A run can end before its card is first shown; its thread replies follow when
            # the channel may take another post (the flusher never sleeps for one channel).
            with self._cv:
                self._pending.setdefault(run.id, posted)
        self.display.run_card_current(
            stored, self.clock(), settled=stored.state.terminal and not due
        )

        with self._cv:
            self._tell.pop(run.id, None)

    def _replies_due(self, run: Run) -> bool:
        """Whether the thread may need a reply: a phase begun, a server failed, or an end."""
        started = any(s.step is not None or s.status != ServerStatus.PENDING for s in run.servers)
        return started or run.state.terminal

    def _edit(self, stored: Run) -> None:
        """Edit the card of ``stored``, a run just read from the store."""
        if not stored.shown_as or not stored.channel:
            return
        self.client.chat_update(
            channel=stored.channel,
            ts=stored.shown_as,
            text=self._fallback(stored),
            blocks=self._card(stored),
        )
        self._thread_replies(stored, stored.channel, stored.shown_as)
        # Counted from the last phase edit too, so each phase reply is also edited at most
        # once per interval (posting a new reply can take a second of pacing).
        self._last_edit[stored.id] = time.monotonic()
        self.display.run_card_current(stored, self.clock(), settled=stored.state.terminal)

    def _card(self, run: Run) -> list[dict[str, object]]:
        options = self.display.run_options(run.id) if run.kind == RunKind.ROLL else None
        return messages.run_card(run, self.clock(), options)

    def _thread_replies(self, run: Run, channel: str, thread: str) -> None:
        """Phase replies, a reply per failed server and one broadcast summary; each posted
        once, ever. ``channel`` and ``thread`` are where the run's card is."""
        if self.thread_updates_of(run) == ThreadUpdates.PHASES:
            self.phases.show(run)
        told = self.display.notices(run.id)
        for server in run.servers:
            what = f"failure:{server.slot}"
            if server.status == ServerStatus.FAILED and what not in told:
                self.post(channel, text=messages.failure_text(run, server), thread_ts=thread)
                self.display.record_notice(run.id, what, self.clock())
        finished = run.servers and any(s.status.finished for s in run.servers)
        if run.state.terminal and finished and "summary" not in told:
            summary = messages.run_summary(run)
            offer = rollblocks.roll_offer(run, self.display.run_image(run.id))
            self.post(
                channel,
                text=summary,
                blocks=[section(summary), *offer] if offer else None,
                thread_ts=thread,
                reply_broadcast=True,
            )
            self.display.record_notice(run.id, "summary", self.clock())

    @staticmethod
    def _fallback(run: Run) -> str:
        return (
            f"Run {run.id}: {messages.VERB[run.kind]} {run.app}/{run.env} "
            f"{run.current} → {run.desired} ({run.state.value.replace('_', ' ')})"
        )
