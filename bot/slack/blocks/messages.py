"""Block Kit builders: pure functions from runs and replies to Slack blocks, within Slack's limits.

A message holds at most 50 blocks and a section at most 3000 characters, so large fleets are
summarised (counts per step and status, failures listed first).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from bot.slack.blocks.alerts import alerts_blocks
from bot.slack.blocks.kit import (
    MAX_BLOCKS,
    MRKDWN,
    Block,
    clip,
    context,
    escape,
    section,
    who,
)
from bot.slack.blocks.roll import roll_blocks
from bot.views.fleet import EnvView, ImageRow, env_view, image_row
from bot.views.runs import Facts, RunView, SlotView, action, plan_view, run_view, slot_view
from bot.views.words import NO_APPS, NO_RUNS, state_words, usage_line
from pipeline.domain import roll
from pipeline.domain.measured import RunOptions
from pipeline.domain.models import Run, RunKind, RunServer, RunState, ServerStatus
from pipeline.errors import UserError
from pipeline.services.replies import (
    AlertsReply,
    HelpReply,
    HistoryReply,
    ImagesReply,
    InfoReply,
    Plan,
    Reply,
    RunReply,
    ScanReply,
    StatusReply,
)

MAX_SERVER_LINES = 25
APPROVE = "run_approve"
REJECT = "run_reject"
WARNING = ":warning:"

STATE_EMOJI = {
    RunState.PLANNED: ":memo:",
    RunState.AWAITING_APPROVAL: ":hourglass_flowing_sand:",
    RunState.APPROVED: ":white_check_mark:",
    RunState.RUNNING: ":gear:",
    RunState.SUCCEEDED: ":large_green_circle:",
    RunState.PARTIALLY_FAILED: ":large_orange_circle:",
    RunState.FAILED: ":red_circle:",
    RunState.REJECTED: ":no_entry_sign:",
    RunState.EXPIRED: ":alarm_clock:",
    RunState.CANCELLED: ":black_square_for_stop:",
}
SERVER_EMOJI = {
    ServerStatus.PENDING: ":white_circle:",
    ServerStatus.WORKING: ":arrows_counterclockwise:",
    ServerStatus.DONE: ":white_check_mark:",
    ServerStatus.FAILED: ":x:",
    ServerStatus.CANCELLED: ":heavy_multiplication_x:",
    ServerStatus.SKIPPED: ":fast_forward:",
}
BEFORE_START = (RunState.AWAITING_APPROVAL, RunState.REJECTED, RunState.EXPIRED)
"""States in which a run's servers are not shown: it never started."""


def _facts(facts: Facts, warning: str) -> str:
    """The image, its versions and freshness (after ``warning`` when stale), strategy, target."""
    return (
        f"*Image* `{escape(facts.image_name)}` ({facts.image_age})\n"
        f"*Versions* {escape(facts.versions)}\n"
        f"*Staleness* {facts.freshness.verdict(warning, MRKDWN)}\n"
        f"*Strategy* {facts.strategy} · *Target* `{escape(facts.target)}`"
    )


# run card -------------------------------------------------------------------------------


def run_card(run: Run, now: datetime, options: RunOptions | None = None) -> list[Block]:
    """The one parent message of a run, edited through its life (``options``: a roll's)."""
    view = run_view(run, now)
    title = (
        f"{STATE_EMOJI[view.state]} *Run {view.id}* · {view.action.headline(MRKDWN)} "
        f"{view.action.unit} · *{view.state_words}*"
    )
    blocks: list[Block] = [
        section(title),
        section(_facts(view.facts, WARNING)),
        context(_people(view)),
    ]
    if view.reason:
        blocks.append(context(escape(view.reason)))
    if view.servers and view.state not in BEFORE_START:
        blocks.append(section(_servers_text(view.servers)))
    blocks.extend(roll_blocks(run, options))
    if view.waiting:
        blocks.append(approval_buttons(view))
    return blocks[:MAX_BLOCKS]


def _people(view: RunView) -> str:
    parts = [f"requested by {who(view.requester)}"]
    if view.approvers:
        parts.append(view.approved_by(MRKDWN))
    if view.waiting:
        parts.append(f"needs {view.approvals_missing} more approval(s) · expires {view.expires}")
    elif view.state == RunState.EXPIRED:
        parts.append("expired without approval — request it again")
    return " · ".join(parts)


def _slot_line(slot: SlotView) -> str:
    line = (
        f"{SERVER_EMOJI[slot.status]} `{escape(slot.name)}` {slot.step_words} · {slot.status_words}"
    )
    if slot.reason:
        line += f" — {escape(clip(slot.reason, 200))}"
    return line


def servers_text(servers: tuple[RunServer, ...]) -> str:
    """Every server's step; beyond MAX_SERVER_LINES, failures first and the rest as counts."""
    return _servers_text(tuple(map(slot_view, servers)))


def _servers_text(slots: tuple[SlotView, ...]) -> str:
    if len(slots) <= MAX_SERVER_LINES:
        return "\n".join(map(_slot_line, slots))
    counts = Counter(
        s.status_words + (f" ({s.step})" if s.status == ServerStatus.WORKING and s.step else "")
        for s in slots
    )
    summary = " · ".join(f"{n} {label}" for label, n in sorted(counts.items()))
    failed = [_slot_line(s) for s in slots if s.status == ServerStatus.FAILED]
    shown = failed[:MAX_SERVER_LINES]
    more = f"\n…and {len(failed) - len(shown)} more failures" if len(failed) > len(shown) else ""
    return clip(f"*{len(slots)} servers:* {summary}\n" + "\n".join(shown) + more)


def approval_buttons(run: RunView) -> Block:
    def button(label: str, action: str, style: str, question: str) -> Block:
        return {
            "type": "button",
            "action_id": action,
            "text": {"type": "plain_text", "text": label},
            "style": style,
            "value": str(run.id),
            "confirm": {
                "title": {"type": "plain_text", "text": f"{label} run {run.id}?"},
                "text": {"type": "mrkdwn", "text": question},
                "confirm": {"type": "plain_text", "text": label},
                "deny": {"type": "plain_text", "text": "Back"},
            },
        }

    what = f"{run.action.verb} {run.action.where} to {run.action.desired} server(s)"
    return {
        "type": "actions",
        "block_id": f"run-{run.id}-approval",
        "elements": [
            button("Approve", APPROVE, "primary", f"This will {what}."),
            button("Reject", REJECT, "danger", f"The request to {what} will be closed."),
        ],
    }


def run_summary(run: Run) -> str:
    """The final thread reply (broadcast to the channel)."""
    view = run_view(run)
    text = (
        f"{STATE_EMOJI[view.state]} Run {view.id} {view.state_words}: {view.action.verb} "
        f"{view.action.where}, "
    )
    if view.kind == RunKind.ROLL:  # in servers replaced, not in slots (two per server)
        text += roll.tally([s.status for s in run.servers]).words() + "."
    else:
        text += f"{view.done} of {len(view.servers)} {view.action.unit} done"
        text += (f", {view.failed} failed and rolled back" if view.failed else "") + "."
    if view.kind in (RunKind.BAKE, RunKind.REFRESH) and view.reason:
        text += f" {escape(view.reason)}"
    return text


def failure_text(run: Run, server: RunServer) -> str:
    slot = slot_view(server)
    cleanup = f" ({escape(slot.cleanup)})" if slot.cleanup else ""
    return (
        f":x: Run {run.id}: `{escape(slot.name)}` failed at {slot.failed_at}: "
        f"{escape(slot.reason or 'unknown reason')}{cleanup}"
    )


def fallback_text(run: Run, *, paused: bool = False) -> str:
    """A run card's notification text: `Run 3: scale up web/production 2 → 5 (running)`, or
    `(paused after the canary)` for a roll waiting for Continue. Said without the run's servers
    (a card's every edit sends it, a fleet can be large)."""
    done = action(run.kind, run.app, run.env, run.current, run.desired)
    state = "paused after the canary" if paused else state_words(run.state)
    return f"Run {run.id}: {done.verb} {done.where} {done.counts} ({state})"


# replies --------------------------------------------------------------------------------


def plan_blocks(plan: Plan, now: datetime) -> list[Block]:
    view = plan_view(plan)
    removals = ""
    if view.removals:
        removals = "\n*Removes* " + ", ".join(f"`{escape(s)}`" for s in view.removals[:20])
    approval = "no approval needed"
    if view.approvals_needed:
        needed = ", ".join(who(a) for a in view.approvers)
        approval = f"needs {view.approvals_needed} approval(s) from {needed}"
    return [
        section(
            f":memo: *Dry run* · {view.action.headline(MRKDWN)} {view.action.unit}. "
            "Nothing was started."
        ),
        section(_facts(view.facts, "") + removals),
        context(approval),
    ]


def error_blocks(error: UserError) -> tuple[str, list[Block]]:
    """Fallback text and blocks for what the person who asked can fix."""
    usage = f"\nUsage: `{usage_line(error.usage)}`" if error.usage else ""
    text = f"{WARNING} {error.message}{usage}"
    return text, [section(text)]


def reply_blocks(reply: Reply, now: datetime) -> tuple[str, list[Block]]:
    """Fallback text and blocks for a reply shown to the person who asked."""
    match reply:
        case InfoReply(message):
            return message, [section(message)]
        case HelpReply(lines):
            text = "\n".join(f"`{usage_line(u)}` — {s}" for u, s in lines)
            return "byoi help", [section(text)]
        case RunReply(plan, run, message):
            if plan is not None and run is None:
                return message or "plan", plan_blocks(plan, now)
            if run is not None:
                return message or f"Run {run.id}", [section(message)] if message else []
            return message, [section(message)]
        case StatusReply():
            return "status", status_blocks(reply)
        case ImagesReply():
            return "images", images_blocks(reply)
        case HistoryReply(runs, cancelled_by):
            return "history", history_blocks(runs, cancelled_by)
        case AlertsReply():
            return reply.message or "alerts", alerts_blocks(reply)
        case ScanReply():
            text = (
                f"Scan: {reply.findings} finding(s), {len(reply.changes.new)} new alert(s), "
                f"{len(reply.changes.resolved)} resolved."
            )
            return text, [section(text)]
    raise AssertionError(reply)


def more_block(left_out: list[str], verb: str) -> Block:
    """Says what a list left out and how to see it: `…and 12 more` with the command to use."""
    listed = escape(", ".join(left_out))
    command = usage_line(f"{verb} <app>")
    return section(clip(f"…and {len(left_out)} more; `{command}` shows one app: {listed}"))


Listed = TypeVar("Listed", EnvView, ImageRow)


def _listed(
    views: list[Listed], render: Callable[[Listed], Block], verb: str, limit: int
) -> list[Block]:
    """One section per app environment; past ``limit`` blocks, one line says what was left
    out."""
    if not views:
        return [section(NO_APPS)]
    if len(views) <= limit:
        return [render(v) for v in views]
    left_out = [v.where for v in views[limit - 1 :]]
    return [*(render(v) for v in views[: limit - 1]), more_block(left_out, verb)]


def status_blocks(reply: StatusReply, limit: int = MAX_BLOCKS) -> list[Block]:
    """One section per app environment, within ``limit`` blocks."""
    return _listed([env_view(e) for e in reply.envs], _env_section, "status", limit)


def _env_section(env: EnvView) -> Block:
    lines = [f"*{env.where}* · {env.count}"]
    if env.error:
        lines.append(f"{WARNING} {escape(env.trouble)}")
    for row in env.servers[:MAX_SERVER_LINES]:
        age = f"{row.age_days}d" if row.age_days is not None else "?"
        lines.append(
            f"`{escape(row.id)}` {row.state} · `{escape(row.image_name)}` ({age}) · "
            f"{escape(row.versions)}"
        )
    if len(env.servers) > MAX_SERVER_LINES:
        rest = Counter(row.state for row in env.servers[MAX_SERVER_LINES:])
        states = ", ".join(f"{n} {state}" for state, n in sorted(rest.items()))
        lines.append(
            f"…and {len(env.servers) - MAX_SERVER_LINES} more ({states}); "
            "`byoi status` in the shell lists every server"
        )
    if env.others:
        owners = escape(", ".join(env.owners))
        lines.append(f":no_entry_sign: {env.unmanaged(f' ({owners})')}")
    if env.active:
        run = env.active
        lines.append(f":gear: {run.in_flight} ({run.action.counts}) by {who(run.requester)}")
    return section("\n".join(lines))


def images_blocks(reply: ImagesReply, limit: int = MAX_BLOCKS) -> list[Block]:
    """One section per app environment's image, within ``limit`` blocks."""
    return _listed([image_row(v) for v in reply.images], _image_section, "images", limit)


def _image_section(row: ImageRow) -> Block:
    if row.name is None:
        return section(f"*{row.where}* `{escape(row.ref)}` :x: {escape(row.error)}")
    return section(
        f"*{row.where}* `{escape(row.name)}` from `{escape(row.ref)}`, "
        f"{row.age} · {row.freshness.verdict(WARNING, MRKDWN)}\n"
        f"recorded: {escape(row.recorded)} · declared: {escape(row.declared)}"
    )


def history_blocks(
    runs: tuple[Run, ...], cancelled_by: Mapping[int, str] | None = None
) -> list[Block]:
    if not runs:
        return [section(NO_RUNS)]
    lines = []
    for view in map(run_view, runs):
        approved = f" · {view.approved_by(MRKDWN)}" if view.approvers else ""
        canceller = (cancelled_by or {}).get(view.id)
        if canceller:
            approved += f" · cancelled by {who(canceller)}"
        lines.append(
            f"{STATE_EMOJI[view.state]} *{view.id}* {view.created} {view.action.entry} · "
            f"{view.state_words} · by {who(view.requester)}{approved}"
        )
    return [section("\n".join(lines))]


def home_view(status: StatusReply, images: ImagesReply) -> dict[str, Any]:
    """The App Home tab: apps, servers, images with staleness, runs in flight."""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": "byoi"}},
        context(f"Servers cloned from your own images. Type `{usage_line('help')}` in a channel."),
        {"type": "divider"},
        *status_blocks(status, HOME_LIMIT),
        {"type": "divider"},
        {"type": "header", "text": {"type": "plain_text", "text": "Images"}},
        *images_blocks(images, HOME_LIMIT),
    ]
    return {"type": "home", "blocks": blocks}


HOME_LIMIT = 45
"""Blocks per list on the App Home: two lists and five more blocks stay within Slack's 100."""
