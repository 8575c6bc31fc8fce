"""Block Kit builders: pure functions from runs and replies to Slack blocks, within Slack's limits.

A message holds at most 50 blocks and a section at most 3000 characters, so large fleets are
summarised (counts per step and status, failures listed first).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from bot.render import usage_line
from bot.slack.blocks.alerts import alerts_blocks
from bot.slack.blocks.kit import MAX_BLOCKS, Block, clip, context, escape, section, who
from bot.slack.blocks.roll import roll_blocks
from pipeline.domain.measured import RunOptions
from pipeline.domain.models import Run, RunKind, RunServer, RunState, ServerStatus
from pipeline.domain.ownership import owner_label
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
VERB = {
    RunKind.SCALE_UP: "scale up",
    RunKind.SCALE_DOWN: "scale down",
    RunKind.REFRESH: "refresh image from a server",
    RunKind.BAKE: "bake image",
    RunKind.ROLL: "roll",
    RunKind.PRUNE: "prune images",
}


def _state(run: Run) -> str:
    return run.state.value.replace("_", " ")


def _age(run: Run, now: datetime) -> str:
    if run.image_created_at is None:
        return "age unknown"
    return f"{max(0, (now - run.image_created_at).days)} days old"


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "none recorded"


# run card -------------------------------------------------------------------------------


def run_card(run: Run, now: datetime, options: RunOptions | None = None) -> list[Block]:
    """The one parent message of a run, edited through its life (``options``: a roll's)."""
    title = (
        f"{STATE_EMOJI[run.state]} *Run {run.id}* · {VERB[run.kind]} "
        f"*{run.app}/{run.env}*: {run.current} → {run.desired} "
        f"{'image(s)' if run.kind == RunKind.PRUNE else 'server(s)'} · *{_state(run)}*"
    )
    staleness = "; ".join(run.notes) if run.notes else "fresh"
    facts = (
        f"*Image* `{escape(run.image_name)}` ({_age(run, now)})\n"
        f"*Versions* {escape(_versions(dict(run.image_versions)))}\n"
        f"*Staleness* {':warning: ' + escape(staleness) if run.notes else staleness}\n"
        f"*Strategy* {run.strategy.value} · *Target* `{escape(run.target)}`"
    )
    blocks: list[Block] = [section(title), section(facts), context(_people(run))]
    if run.reason:
        blocks.append(context(escape(run.reason)))
    if run.servers and run.state not in (
        RunState.AWAITING_APPROVAL,
        RunState.REJECTED,
        RunState.EXPIRED,
    ):
        blocks.append(section(servers_text(run.servers)))
    blocks.extend(roll_blocks(run, options))
    if run.state == RunState.AWAITING_APPROVAL:
        blocks.append(approval_buttons(run))
    return blocks[:MAX_BLOCKS]


def _people(run: Run) -> str:
    parts = [f"requested by {who(run.requester)}"]
    if run.approvers:
        parts.append("approved by " + ", ".join(who(a) for a in run.approvers))
    if run.state == RunState.AWAITING_APPROVAL:
        needed = run.approvals_needed - len(run.approvers)
        expires = run.expires_at.strftime("%H:%M UTC") if run.expires_at else "never"
        parts.append(f"needs {needed} more approval(s) · expires {expires}")
    elif run.state == RunState.EXPIRED:
        parts.append("expired without approval — request it again")
    return " · ".join(parts)


def server_line(server: RunServer) -> str:
    name = server.provider_id or server.key
    step = server.step.value if server.step else "waiting"
    line = f"{SERVER_EMOJI[server.status]} `{escape(name)}` {step} · {server.status.value}"
    if server.reason:
        line += f" — {escape(clip(server.reason, 200))}"
    return line


def servers_text(servers: tuple[RunServer, ...]) -> str:
    """Every server's step; beyond MAX_SERVER_LINES, failures first and the rest as counts."""
    if len(servers) <= MAX_SERVER_LINES:
        return "\n".join(server_line(s) for s in servers)
    counts = Counter(
        f"{s.status.value}"
        + (f" ({s.step.value})" if s.status == ServerStatus.WORKING and s.step else "")
        for s in servers
    )
    summary = " · ".join(f"{n} {label}" for label, n in sorted(counts.items()))
    failed = [server_line(s) for s in servers if s.status == ServerStatus.FAILED]
    shown = failed[:MAX_SERVER_LINES]
    more = f"\n…and {len(failed) - len(shown)} more failures" if len(failed) > len(shown) else ""
    return clip(f"*{len(servers)} servers:* {summary}\n" + "\n".join(shown) + more)


def approval_buttons(run: Run) -> Block:
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

    what = f"{VERB[run.kind]} {run.app}/{run.env} to {run.desired} server(s)"
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
    done = sum(s.status == ServerStatus.DONE for s in run.servers)
    failed = sum(s.status == ServerStatus.FAILED for s in run.servers)
    text = (
        f"{STATE_EMOJI[run.state]} Run {run.id} {_state(run)}: {VERB[run.kind]} "
        f"{run.app}/{run.env}, {done} of {len(run.servers)} server(s) done"
    )
    text += (f", {failed} failed and rolled back" if failed else "") + "."
    if run.kind in (RunKind.BAKE, RunKind.REFRESH) and run.reason:
        text += f" {escape(run.reason)}"
    return text


def failure_text(run: Run, server: RunServer) -> str:
    cleanup = f" ({escape(server.cleanup)})" if server.cleanup else ""
    step = server.step.value if server.step else "start"
    return (
        f":x: Run {run.id}: `{escape(server.provider_id or server.key)}` failed at {step}: "
        f"{escape(server.reason or 'unknown reason')}{cleanup}"
    )


# replies --------------------------------------------------------------------------------


def plan_blocks(plan: Plan, now: datetime) -> list[Block]:
    staleness = plan.staleness.summary()
    removals = ""
    if plan.removals:
        removals = "\n*Removes* " + ", ".join(f"`{escape(s.id)}`" for s in plan.removals[:20])
    approval = (
        (
            f"needs {plan.approvals_needed} approval(s) from "
            + ", ".join(who(a) for a in plan.approvers)
        )
        if plan.approvals_needed
        else ("no approval needed")
    )
    return [
        section(
            f":memo: *Dry run* · {VERB[plan.kind]} *{plan.app}/{plan.env}*: {plan.current} → "
            f"{plan.desired} server(s). Nothing was started."
        ),
        section(
            f"*Image* `{escape(plan.image.name)}` ({plan.staleness.age_days} days old)\n"
            f"*Versions* {escape(_versions(dict(plan.image.versions)))}\n"
            f"*Staleness* {escape(staleness)}\n*Strategy* {plan.strategy.value} · "
            f"*Target* `{escape(plan.target)}`{removals}"
        ),
        context(approval),
    ]


def error_blocks(error: UserError) -> tuple[str, list[Block]]:
    """Fallback text and blocks for what the person who asked can fix."""
    usage = f"\nUsage: `{usage_line(error.usage)}`" if error.usage else ""
    text = f":warning: {error.message}{usage}"
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
        case HistoryReply(runs):
            return "history", history_blocks(runs)
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
    return section(clip(f"…and {len(left_out)} more; `/byoi {verb} <app>` shows one app: {listed}"))


def status_blocks(reply: StatusReply, limit: int = MAX_BLOCKS) -> list[Block]:
    """One section per app environment; past ``limit`` blocks, one line says what was left out."""
    blocks: list[Block] = []
    shown = reply.envs if len(reply.envs) <= limit else reply.envs[: limit - 1]
    for env in shown:
        lines = [f"*{env.app}/{env.env}* · {len(env.servers)} server(s)"]
        if env.error:
            lines.append(f":warning: could not list servers: {escape(env.error)}")
        for view in env.servers[:MAX_SERVER_LINES]:
            age = f"{view.image_age_days}d" if view.image_age_days is not None else "?"
            lines.append(
                f"`{escape(view.server.id)}` {view.server.state.value} · "
                f"`{escape(view.image_name)}` ({age}) · "
                f"{escape(_versions(dict(view.versions)))}"
            )
        if len(env.servers) > MAX_SERVER_LINES:
            rest = Counter(v.server.state.value for v in env.servers[MAX_SERVER_LINES:])
            states = ", ".join(f"{n} {state}" for state, n in sorted(rest.items()))
            lines.append(
                f"…and {len(env.servers) - MAX_SERVER_LINES} more ({states}); "
                "`byoi status` in the shell lists every server"
            )
        if env.others:
            owners = sorted({owner_label(s) for s in env.others})
            lines.append(
                f":no_entry_sign: not managed here: {len(env.others)} server(s) "
                f"({escape(', '.join(owners))}), never touched"
            )
        if env.active_run:
            run = env.active_run
            lines.append(
                f":gear: run {run.id} {_state(run)} ({run.current} → {run.desired}) by "
                f"{who(run.requester)}"
            )
        blocks.append(section("\n".join(lines)))
    if len(shown) < len(reply.envs):
        blocks.append(more_block([f"{e.app}/{e.env}" for e in reply.envs[len(shown) :]], "status"))
    return blocks or [section("No apps configured.")]


def images_blocks(reply: ImagesReply, limit: int = MAX_BLOCKS) -> list[Block]:
    """One section per app environment; past ``limit`` blocks, one line says what was left out."""
    blocks: list[Block] = []
    shown = reply.images if len(reply.images) <= limit else reply.images[: limit - 1]
    for view in shown:
        if view.image is None or view.staleness is None:
            blocks.append(
                section(
                    f"*{view.app}/{view.env}* `{escape(view.ref)}` :x: {escape(view.error or '')}"
                )
            )
            continue
        verdict = (
            "fresh" if view.staleness.fresh else ":warning: " + escape(view.staleness.summary())
        )
        blocks.append(
            section(
                f"*{view.app}/{view.env}* `{escape(view.image.name)}` from `{escape(view.ref)}`, "
                f"{view.staleness.age_days} days old · {verdict}\n"
                f"recorded: {escape(_versions(dict(view.image.versions)))} · "
                f"declared: {escape(_versions(view.declared))}"
            )
        )
    if len(shown) < len(reply.images):
        blocks.append(
            more_block([f"{v.app}/{v.env}" for v in reply.images[len(shown) :]], "images")
        )
    return blocks or [section("No apps configured.")]


def history_blocks(runs: tuple[Run, ...]) -> list[Block]:
    if not runs:
        return [section("No runs yet.")]
    lines = []
    for run in runs:
        approved = (
            " · approved by " + ", ".join(who(a) for a in run.approvers) if run.approvers else ""
        )
        lines.append(
            f"{STATE_EMOJI[run.state]} *{run.id}* {run.created_at:%Y-%m-%d %H:%M} "
            f"{run.app}/{run.env} {VERB[run.kind]} {run.current} → {run.desired} · "
            f"{_state(run)} · by {who(run.requester)}{approved}"
        )
    return [section("\n".join(lines))]


def home_view(status: StatusReply, images: ImagesReply) -> dict[str, Any]:
    """The App Home tab: apps, servers, images with staleness, runs in flight."""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": "byoi"}},
        context("Servers cloned from your own images. Type `/byoi help` in a channel."),
        {"type": "divider"},
        *status_blocks(status, HOME_LIMIT),
        {"type": "divider"},
        {"type": "header", "text": {"type": "plain_text", "text": "Images"}},
        *images_blocks(images, HOME_LIMIT),
    ]
    return {"type": "home", "blocks": blocks}


HOME_LIMIT = 45
"""Blocks per list on the App Home: two lists and five more blocks stay within Slack's 100."""
