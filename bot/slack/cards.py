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
from typing import Any, cast

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack import cardpost
from bot.slack.blocks import messages
from bot.slack.poster import ChannelBusy, Poster
from bot.slack.thread import ThreadReplies
from pipeline.config.model import ThreadUpdates
from pipeline.domain.models import Run, RunKind, RunState, ServerStatus
from pipeline.domain.phases import Part
from pipeline.ports import Clock
from pipeline.services.display import Display
from pipeline.state.cards import run_revision

log = logging.getLogger(__name__)
ChannelOf = Callable[[Run], str | None]
ThreadUpdatesOf = Callable[[Run], ThreadUpdates]
__all__ = ["Cards", "ChannelBusy", "Poster"]


class _TimedEdits:
    """The client as the phase replies see it: the flusher learns whether they edited."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self.edited = False

    def chat_update(self, **kwargs: Any) -> Any:
        self.edited = True
        return self.client.chat_update(**kwargs)

    def conversations_replies(self, **kwargs: Any) -> Any:
        return self.client.conversations_replies(**kwargs)


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
        self._edits = _TimedEdits(client)
        self.finder = cardpost.CardFinder(client)
        # The flusher never waits for a channel: a post that would have to raises ChannelBusy
        # and the card is shown further once the channel takes its next post.
        self.thread = ThreadReplies(
            cast(WebClient, self._edits), self.post.now, display, clock, wait=self.post.wait
        )

        # Run id -> its channel: only ids wait here, the run is read from the store when its
        # card is shown, so a backlog costs a few bytes per run.
        self._pending: dict[int, str] = {}
        self._last_edit: dict[int, float] = {}
        self._shows: dict[int, str] = {}
        """What each unsettled card was last edited to, so a card shown further after a busy
        channel is not edited again with the same content."""
        self._cut: dict[int, tuple[Part, ...] | None] = {}
        """Runs whose thread replies a busy channel cut short, with the phases being posted
        (if known): a large run's phases are read once per edit, not once per post."""
        self._tell: dict[int, Callable[[str], object]] = {}
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # Notifier ---------------------------------------------------------------------------

    needs_servers = False
    """Only the run's id and channel are queued; the flusher reads the run when it shows it."""

    def run_changed(self, run: Run) -> None:
        """Queue the run's card; the flusher thread posts or edits it, so callers never wait."""
        channel = run.channel or self.channel_of(run) or ""
        with self._cv:
            self._pending[run.id] = channel
            self._cv.notify()

    def on_post_error(self, run_id: int, tell: Callable[[str], object]) -> None:
        """Who to tell if the card cannot be posted at all (byoi is not in the channel)."""
        with self._cv:
            if run_id not in self._last_edit:  # posted already: nobody will need telling
                self._tell[run_id] = tell
                if len(self._tell) > 1000:  # a backlog of unposted cards: tell the newest
                    del self._tell[next(iter(self._tell))]

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
        resynced = time.monotonic()
        while True:
            with self._cv:
                if self._stopping:
                    break
                self._cv.wait(0.2)
                busy = bool(self._pending)
            try:
                self._flush(force=False)
                # Reading every card behind the store is for what a queue lost (a restart, an
                # outage); with a backlog queued it would read the backlog again and again, so
                # it waits for an idle moment (or ten periods).
                since = time.monotonic() - resynced
                if since >= self.resync_every * (10 if busy else 1):
                    resynced = time.monotonic()
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
            if self._pending:
                time.sleep(0.05)  # what is left waits for its channel's next post

    def _flush(self, *, force: bool) -> None:
        """Show every card whose messages were not edited for an interval (any, with ``force``),
        and go on with every thread cut short by a busy channel that may take a post now (it
        only posts, so it edits nothing until its replies are all posted)."""
        now = time.monotonic()
        with self._cv:
            due = [
                run_id
                for run_id, channel in self._pending.items()
                if (
                    self.post.wait(channel) == 0
                    if run_id in self._cut
                    else force or now - self._last_edit.get(run_id, 0.0) >= self.interval
                )
            ]
            for run_id in due:
                del self._pending[run_id]
            # Edit times matter for one interval; a process lives for months (bench/soak.py).
            if len(self._last_edit) > 1000:
                self._last_edit = {
                    k: t for k, t in self._last_edit.items() if now - t < 60 or k in self._pending
                }
        for run_id in due:
            run = self.display.run(run_id)
            if run is not None:
                self._show_one(run)

    def _show_one(self, run: Run) -> None:
        try:
            if run.id in self._cut:
                self._post_more(run, self._cut.pop(run.id))
            else:
                self._show(run)
        except ChannelBusy:
            # Shown further once the channel takes its next post: the missing replies first,
            # then (after the interval) the edits.
            self._cut.setdefault(run.id, None)
            self._requeue(run)
        except SlackApiError as exc:
            if exc.response.get("error") in ("not_in_channel", "channel_not_found"):
                self._cannot_post(run, str(exc.response.get("error")))
                return
            self._retry_later(run, exc)
        except (SlackClientError, OSError) as exc:
            self._retry_later(run, exc)

    def _requeue(self, run: Run) -> None:
        with self._cv:
            self._pending.setdefault(run.id, run.channel or self.channel_of(run) or "")

    def _retry_later(self, run: Run, exc: Exception) -> None:
        log.warning("could not show the card of run %s (will retry): %s", run.id, exc)
        self._requeue(run)
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

    def _show(self, stored: Run) -> None:
        """Post or edit the card of ``stored``, a run just read from the store."""
        if stored.shown_as:
            self._edit(stored)
            return
        channel = self.channel_of(stored)
        if channel is None:
            return  # nowhere to show it (a run from the shell with no channel)
        where, ts = self._posted_before(stored, channel) or self._post_card(stored, channel)
        self.display.run_shown(stored.id, where, ts)
        self.display.reply_shown(stored.id, cardpost.CARD, ts, "", self.clock())
        with self._cv:
            self._tell.pop(stored.id, None)
            # Posted, not edited: the first edit need not wait (on_post_error looks here too).
            self._last_edit.setdefault(stored.id, 0.0)
        # What changed since ``stored`` was read is queued already (by ``run_changed``): the
        # card is shown further from the run as it is then, not read again here.
        due = self._replies_due(stored)
        if due:
            # A run can end before its card is first shown; its thread replies follow when
            # the channel may take another post.
            self._shows[stored.id] = run_revision(stored)
            self._requeue(stored)
        self.display.run_card_current(
            stored, self.clock(), settled=stored.state.terminal and not due
        )

    def _post_card(self, run: Run, channel: str) -> tuple[str, str]:
        """Post the card, recorded as intended first (bot/slack/cardpost.py)."""
        if self.post.wait(channel) > 0:
            raise ChannelBusy(channel)  # before the intent: a busy channel costs no lookup
        self.display.reply_intended(run.id, cardpost.CARD, "", self.clock())
        response = self.post.now(
            channel,
            text=self._fallback(run),
            blocks=self._card(run),
            metadata=cardpost.metadata(run.id, self.display.installation()),
        )
        return str(response.get("channel", channel)), str(response["ts"])

    def _posted_before(self, run: Run, channel: str) -> tuple[str, str] | None:
        """The card a crash left posted but not stored, found in its channel."""
        intent = self.display.thread_replies(run.id).get(cardpost.CARD)
        if intent is None or intent.posted:
            return None
        ts = self.finder.find(channel, run.id, self.display.installation())
        if ts is not None:
            log.info("run %s: adopted the card a crash left posted (%s)", run.id, ts)
        return (channel, ts) if ts is not None else None

    def _replies_due(self, run: Run) -> bool:
        """Whether the thread may need a reply: a phase begun, a server failed, or an end."""
        started = any(s.step is not None or s.status != ServerStatus.PENDING for s in run.servers)
        return started or run.state.terminal

    def _edit(self, stored: Run) -> None:
        """Edit the card of ``stored`` (unless this process last edited it to the same run),
        then its thread; each message is edited at most once per interval."""
        if not stored.shown_as or not stored.channel:
            return
        self._edits.edited = False
        try:
            self._edit_card(stored, stored.shown_as, stored.channel)
            self._thread_replies(stored)
        finally:
            # Counted from the last edit of the card or a phase reply (a post is no edit).
            if self._edits.edited:
                self._last_edit[stored.id] = time.monotonic()
        self.display.run_card_current(stored, self.clock(), settled=stored.state.terminal)
        if stored.state.terminal:
            self._shows.pop(stored.id, None)

    def _edit_card(self, stored: Run, ts: str, channel: str) -> None:
        """Edit the card itself to ``stored``, unless this process last showed it that run."""
        revision = run_revision(stored)
        if self._shows.get(stored.id) != revision:
            self._edits.chat_update(
                channel=channel, ts=ts, text=self._fallback(stored), blocks=self._card(stored)
            )
            self._shows[stored.id] = revision

    def _post_more(self, run: Run, parts: tuple[Part, ...] | None) -> None:
        """Go on with a thread a busy channel cut short: the card first, once its interval is
        over (an edit takes none of the channel's posts, and the card says where the run is
        now: after an outage the missing replies can take a while), then the missing replies;
        their edits follow (so it is not settled here)."""
        if run.shown_as and run.channel:
            since = time.monotonic() - self._last_edit.get(run.id, 0.0)
            if since >= self.interval:
                self._edits.edited = False
                try:
                    self._edit_card(run, run.shown_as, run.channel)
                except (SlackClientError, OSError) as exc:  # the replies need not wait for it
                    log.warning("could not edit the card of run %s (will retry): %s", run.id, exc)
                if self._edits.edited:
                    self._last_edit[run.id] = time.monotonic()
            if parts is not None:  # those read when the thread was cut short
                self._show_thread(run, parts, edits=False, tail=False)
            self._show_thread(run, self._parts(run), edits=False)  # and any begun since
        self._requeue(run)

    def _card(self, run: Run) -> list[dict[str, object]]:
        options = self.display.run_options(run.id) if run.kind == RunKind.ROLL else None
        return messages.run_card(run, self.clock(), options)

    def _thread_replies(self, run: Run) -> None:
        """Phase replies, a reply per failed server and one broadcast summary; each posted
        once, ever (bot/slack/thread.py)."""
        self._show_thread(run, self._parts(run))

    def _parts(self, run: Run) -> tuple[Part, ...]:
        """The run's phases (a roll's batches) when its thread tells them, else none."""
        if self.thread_updates_of(run) == ThreadUpdates.PHASES:
            return self.display.phases(run)
        return ()

    def _show_thread(
        self, run: Run, parts: tuple[Part, ...], *, edits: bool = True, tail: bool = True
    ) -> None:
        """The thread from ``parts``; if the channel is busy, it goes on from these same parts."""
        try:
            self.thread.show(run, parts, edits=edits, tail=tail)
        except ChannelBusy:
            self._cut[run.id] = parts
            raise

    def _fallback(self, run: Run) -> str:
        rolling = run.kind == RunKind.ROLL and run.state == RunState.RUNNING
        paused = rolling and self.display.run_options(run.id).paused
        return messages.fallback_text(run, paused=paused)
