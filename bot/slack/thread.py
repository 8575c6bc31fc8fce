"""A run's thread as its record: one reply per step phase (a roll: per batch), posted when the
first server enters it and edited in place as servers go through it; a reply per failed server;
the summary, broadcast to the channel.

Each line is derived from the stored run, and where each reply is and what it last said are
stored too, so a restart edits the replies to their final state. A reply is recorded before it
is posted and carries its key in the message metadata: if byoi dies after Slack took the post
but before it stored where the reply is, the restart finds the reply in the thread
(conversations.replies) and adopts it instead of posting it again. Called from the card's
coalesced flush, so each reply is edited at most once per card interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack import readback
from bot.slack.blocks import messages
from bot.slack.blocks import roll as rollblocks
from bot.slack.blocks.kit import Block, escape, section
from bot.slack.poster import ChannelBusy
from bot.views.words import part_line
from pipeline.domain.models import Run, ServerStatus
from pipeline.domain.phases import Part, ThreadReply
from pipeline.ports import Clock
from pipeline.services.display import Display

log = logging.getLogger(__name__)
Post = Callable[..., dict[str, object]]

EVENT_TYPE = "byoi_reply"
"""The metadata event type of byoi's thread replies; the payload names the run and the reply."""

# Slack's answers when the token may not read the channel's threads: byoi then posts again.
_CANNOT_READ = (*readback.CANNOT_READ, "not_in_channel")
_PAGES = 20


def phase_text(part: Part) -> str:
    """A phase's or a batch's reply: its line behind a mark saying how it is going."""
    if part.paused:
        mark = ":double_vertical_bar:"
    elif not part.finished:
        mark = ":arrows_counterclockwise:"
    elif part.troubled:
        mark = ":warning:"
    else:
        mark = ":white_check_mark:"
    return f"{mark} {escape(part_line(part))}"


@dataclass(frozen=True)
class Due:
    """A reply the thread should have, as it should read now."""

    what: str
    text: str
    editable: bool
    blocks: list[Block] | None = None
    broadcast: bool = False


class ThreadReplies:
    def __init__(
        self,
        client: WebClient,
        post: Post,
        display: Display,
        clock: Clock,
        *,
        wait: Callable[[str], float] = lambda _: 0.0,
    ) -> None:
        self.client = client
        self.wait = wait
        """Seconds until the channel takes a post: a reply that would wait is not recorded as
        intended (raising ChannelBusy), so a busy channel never costs a thread lookup."""
        self.post = post
        self.display = display
        self.clock = clock
        self._cannot_read = False
        """Slack refused to show a thread (a missing scope): said once, then no more lookups."""

    def show(
        self, run: Run, parts: tuple[Part, ...], *, edits: bool = True, tail: bool = True
    ) -> None:
        """Post each reply the run's thread lacks, in order: one per part (phase or batch),
        then (``tail``) one per failed server and the summary; edit a part's reply whose line
        changed (``edits``). A reply whose post a crash left unknown is looked up first."""
        channel, thread = run.channel, run.shown_as
        if not channel or not thread:
            return
        shown = self.display.thread_replies(run.id)
        found: dict[str, tuple[str, str]] | None = None
        for due in self._due(run, parts, tail=tail):
            reply = shown.get(due.what)
            if reply is not None and not reply.posted:
                if found is None:
                    found = self._in_thread(run)
                if due.what in found:
                    ts, text = found[due.what]
                    reply = ThreadReply(due.what, ts, text)
                    self.display.reply_shown(run.id, due.what, ts, text, self.clock())
                else:
                    reply = None
            if reply is None:
                self._post(run, due, channel, thread)
            elif edits and due.editable and reply.shown_as and reply.text != due.text:
                self.client.chat_update(
                    channel=channel,
                    ts=reply.shown_as,
                    text=due.text,
                    metadata=_metadata(run, due),
                )
                self.display.reply_shown(run.id, due.what, reply.shown_as, due.text, self.clock())

    def _due(self, run: Run, parts: tuple[Part, ...], *, tail: bool) -> Iterator[Due]:
        for part in parts:
            yield Due(part.key, phase_text(part), editable=True)
        if not tail:
            return
        for server in run.servers:
            if server.status == ServerStatus.FAILED:
                text = messages.failure_text(run, server)
                yield Due(f"failure:{server.slot}", text, editable=False)
        finished = run.servers and any(s.status.finished for s in run.servers)
        if run.state.terminal and finished:
            summary = messages.run_summary(run)
            offer = rollblocks.roll_offer(run, self.display.run_image(run.id))
            blocks = [section(summary), *offer] if offer else None
            yield Due("summary", summary, editable=False, blocks=blocks, broadcast=True)

    def _post(self, run: Run, due: Due, channel: str, thread: str) -> None:
        """Post ``due`` in the run's thread (``channel``, ``thread``: where its card is)."""
        if self.wait(channel) > 0:
            raise ChannelBusy(channel)
        self.display.reply_intended(run.id, due.what, due.text, self.clock())
        extra: dict[str, object] = {"reply_broadcast": True} if due.broadcast else {}
        if due.blocks:
            extra["blocks"] = due.blocks
        response = self.post(
            channel,
            text=due.text,
            thread_ts=thread,
            metadata=_metadata(run, due),
            **extra,
        )
        self.display.reply_shown(run.id, due.what, str(response["ts"]), due.text, self.clock())

    def _in_thread(self, run: Run) -> dict[str, tuple[str, str]]:
        """byoi's replies in the run's thread, by what they are: (ts, text). Empty when
        Slack will not show the thread to this token (then byoi posts again)."""
        if self._cannot_read:
            return {}
        found: dict[str, tuple[str, str]] = {}
        thread = {"channel": str(run.channel), "ts": str(run.shown_as)}
        try:
            for message in readback.messages(self.client.conversations_replies, _PAGES, **thread):
                what = _reply_of(run, message)
                if what is not None:
                    found[what] = (str(message["ts"]), str(message.get("text", "")))
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            if error not in _CANNOT_READ:
                raise
            self._cannot_read = True
            log.warning(
                "cannot read run threads (%s%s): a reply whose post a crash left unknown is "
                "posted again; add the channels:history and groups:history scopes",
                error,
                f", needs {exc.response.get('needed')}" if exc.response.get("needed") else "",
            )
            return {}
        return found


def _metadata(run: Run, due: Due) -> dict[str, object]:
    """What finds the reply again in the thread (Slack message metadata)."""
    return {"event_type": EVENT_TYPE, "event_payload": {"run": run.id, "reply": due.what}}


def _reply_of(run: Run, message: dict[str, object]) -> str | None:
    """Which of this run's replies ``message`` is, by its metadata; None if not one."""
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT_TYPE:
        return None
    payload = metadata.get("event_payload")
    if not isinstance(payload, dict) or payload.get("run") != run.id:
        return None
    what = payload.get("reply")
    return what if isinstance(what, str) else None
