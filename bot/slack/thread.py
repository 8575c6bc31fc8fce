"""A run's thread as its step record: one reply per phase, posted when the first server enters
the step and edited in place as servers go through it.

Each phase line is derived from the stored run, and where each reply is and what it last said
are stored too, so a restart edits the replies to their final state and never posts one twice.
Called from the card's coalesced flush, so each reply is edited at most once per card interval.
"""

from __future__ import annotations

from collections.abc import Callable

from slack_sdk import WebClient

from bot.slack.blocks.kit import escape
from bot.views.words import phase_line
from pipeline.domain.models import Run
from pipeline.domain.phases import Phase
from pipeline.ports import Clock
from pipeline.services.display import Display

Post = Callable[..., dict[str, object]]


def phase_text(phase: Phase) -> str:
    if not phase.finished:
        mark = ":arrows_counterclockwise:"
    elif phase.failed or phase.stopped:
        mark = ":warning:"
    else:
        mark = ":white_check_mark:"
    return f"{mark} {escape(phase_line(phase))}"


class PhaseReplies:
    def __init__(self, client: WebClient, post: Post, display: Display, clock: Clock) -> None:
        self.client = client
        self.post = post
        self.display = display
        self.clock = clock

    def show(self, run: Run) -> None:
        """Post a reply for each phase a server entered; edit one whose line changed."""
        if not run.channel or not run.shown_as:
            return
        shown = self.display.thread_replies(run.id)
        for phase in self.display.phases(run):
            what = f"phase:{phase.name}"
            text = phase_text(phase)
            reply = shown.get(what)
            if reply is None:
                response = self.post(run.channel, text=text, thread_ts=run.shown_as)
                self.display.reply_shown(run.id, what, str(response["ts"]), text, self.clock())
            elif reply.text != text:
                self.client.chat_update(channel=run.channel, ts=reply.shown_as, text=text)
                self.display.reply_shown(run.id, what, reply.shown_as, text, self.clock())
