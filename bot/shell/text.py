"""Replies and runs rendered as plain text, for the shell (buttons become typed commands).

The words come from the view model (bot/views/); this module chooses only the layout: aligned
columns, two-space indents and a mark per server status.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.views.alerts import alert_view
from bot.views.fleet import EnvView, ImageRow, env_view, image_row
from bot.views.runs import RunView, SlotView, plan_view, run_view, slot_view
from bot.views.words import NO_ALERTS, NO_APPS, NO_RUNS, days_old, usage_line
from pipeline.domain.alerts import Alert
from pipeline.domain.models import Run, RunServer, ServerStatus
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

STATUS_MARK = {
    ServerStatus.PENDING: "·",
    ServerStatus.WORKING: "…",
    ServerStatus.DONE: "✓",
    ServerStatus.FAILED: "✗",
    ServerStatus.CANCELLED: "⊘",
    ServerStatus.SKIPPED: "-",
}
WARNING = "⚠"


def error_text(error: UserError) -> str:
    usage = f"\n  usage: {usage_line(error.usage)}" if error.usage else ""
    return f"✗ {error.message}{usage}"


def render(reply: Reply) -> str:
    match reply:
        case InfoReply(message):
            return message
        case HelpReply(lines):
            width = max(len(usage_line(u)) for u, _ in lines)
            return "\n".join(f"  {usage_line(u).ljust(width)}  {s}" for u, s in lines)
        case RunReply(plan, run, message):
            parts = [p for p in (message, plan_text(plan, run) if plan else None) if p]
            if run is not None and plan is None and run.state.terminal:
                parts.append(run_text(run))
            return "\n".join(parts)
        case StatusReply():
            return status_text(reply)
        case ImagesReply():
            return images_text(reply)
        case HistoryReply(runs, cancelled_by):
            return history_text(runs, cancelled_by)
        case AlertsReply(alerts, _, message):
            shown = [message] if message else []
            shown.extend(map(alert_line, alerts))
            return "\n".join(shown) or NO_ALERTS
        case ScanReply():
            return scan_text(reply)
    raise AssertionError(reply)


def _fact(label: str, words: str) -> str:
    """One line of a card: `  image     web-base (img-1), 3 days old`."""
    return f"  {label:<9} {words}"


def alert_line(alert: Alert) -> str:
    view = alert_view(alert)
    return (
        f"alert {view.id:<4} {view.where} {view.image_name} · {view.finding}: "
        f"{view.detail} · {view.standing} → `{view.fix}` or `{view.snooze}`"
    )


def scan_text(reply: ScanReply) -> str:
    rows = list(map(image_row, reply.observations))
    # Columns as wide as their longest entry: an image's name can be long.
    where = max([len("app/env"), *(len(row.where) for row in rows)])
    image = max([len("image"), *(len(row.name or row.ref) for row in rows)])
    lines = [f"{'app/env':<{where}} {'image':<{image}} {'age':>5}  findings"]
    for row in rows:
        if row.name is None:
            lines.append(f"{row.where:<{where}} {row.ref:<{image}} {'-':>5}  ✗ {row.error}")
        else:
            lines.append(
                f"{row.where:<{where}} {row.name:<{image}} {row.age_days:>4}d  "
                f"{row.freshness.verdict()}"
            )
    changes = reply.changes
    lines.append(
        f"{reply.findings} finding(s): {len(changes.new)} new alert(s), "
        f"{len(changes.reminded)} reminded, {len(changes.resolved)} resolved"
    )
    return "\n".join(lines)


def plan_text(plan: Plan, run: Run | None) -> str:
    view = plan_view(plan, run)
    facts = view.facts
    title = f"run {view.run.id}" if view.run else "plan (dry run)"
    lines = [
        f"{title} · {view.action.headline()} {view.action.unit}",
        _fact("image", f"{facts.image_name} ({view.image_id}), {facts.image_age}"),
        _fact("versions", facts.versions),
        _fact("staleness", facts.freshness.verdict(WARNING)),
        _fact(
            "strategy", f"{facts.strategy} · target {facts.target} · requested by {view.requester}"
        ),
    ]
    if view.scope:
        lines.append(_fact(*view.scope))
    if view.approvals_needed:
        who = ", ".join(view.approvers)
        lines.append(_fact("approval", f"{view.approvals_needed} needed from {who}"))
    else:
        lines.append(_fact("approval", "not required"))
    if view.run is not None:
        lines.append(_state_line(view.run))
    return "\n".join(lines)


def _state_line(view: RunView) -> str:
    if view.waiting:
        return _fact(
            "state",
            f"{view.state_words} (expires {view.expires}) → type `approve {view.id}` or "
            f"`reject {view.id}`",
        )
    by = f" · {view.approved_by()}" if view.approvers else ""
    extra = f" · {view.reason}" if view.reason else ""
    return _fact("state", f"{view.state_words}{by}{extra}")


def server_line(run: Run, server: RunServer) -> str:
    return _slot_line(slot_view(server, ended=run.state.terminal))


def _slot_line(slot: SlotView) -> str:
    text = (
        f"    {STATUS_MARK[slot.status]} {slot.name:<22} {slot.step_words:<9} {slot.status_words}"
    )
    if slot.reason:
        text += f" · {slot.reason}"
    if slot.cleanup:
        text += f" · {slot.cleanup}"
    return text


def run_text(run: Run) -> str:
    view = run_view(run)
    lines = [
        f"run {view.id} · {view.action.headline()} · image {view.facts.image_name}",
        _state_line(view),
    ]
    lines.extend(map(_slot_line, view.servers))
    return "\n".join(lines)


def status_text(reply: StatusReply) -> str:
    return "\n".join(line for env in reply.envs for line in _env_lines(env_view(env))) or NO_APPS


def _env_lines(env: EnvView) -> list[str]:
    out = [f"{env.where}: {env.count}"]
    if env.error:
        out.append(f"  ✗ {env.trouble}")
    for row in env.servers:
        age = days_old(row.age_days) if row.age_days is not None else "?"
        out.append(f"  {row.id:<24} {row.state:<8} image {row.image_name} ({age}) · {row.versions}")
    if env.others:
        out.append(f"  {env.unmanaged()}")
        out.extend(f"    {server:<24} {owner}" for server, owner in env.others)
    if env.active:
        run = env.active
        out.append(
            f"  in flight: run {run.id} ({run.state_words}, {run.action.counts}, "
            f"by {run.requester})"
        )
    return out


def images_text(reply: ImagesReply) -> str:
    return "\n".join(line for v in reply.images for line in _image_lines(image_row(v))) or NO_APPS


def _image_lines(row: ImageRow) -> list[str]:
    if row.name is None:
        return [f"{row.where}: {row.ref} ✗ {row.error}"]
    verdict = row.freshness.verdict(WARNING)
    return [
        f"{row.where}: {row.name} ({row.id}) from {row.ref}, {row.age} · {verdict}",
        f"  recorded {row.recorded}",
        f"  declared {row.declared}",
    ]


def history_text(runs: tuple[Run, ...], cancelled_by: Mapping[int, str] | None = None) -> str:
    if not runs:
        return NO_RUNS
    out = []
    for view in map(run_view, runs):
        approved = f", {view.approved_by()}" if view.approvers else ""
        canceller = (cancelled_by or {}).get(view.id)
        tail = f", cancelled by {canceller}" if canceller else ""
        tail += f", {view.failed} failed" if view.failed else ""
        out.append(
            f"run {view.id:<4} {view.created}  {view.action.entry}  "
            f"{view.state_words}  (by {view.requester}{approved}{tail})"
        )
    return "\n".join(out)
