"""Replies and runs rendered as plain text, for the shell (buttons become typed commands)."""

from __future__ import annotations

from datetime import datetime

from bot.render import usage_line
from pipeline.domain.alerts import Alert, AlertState
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

STATUS_MARK = {
    ServerStatus.PENDING: "·",
    ServerStatus.WORKING: "…",
    ServerStatus.DONE: "✓",
    ServerStatus.FAILED: "✗",
    ServerStatus.CANCELLED: "⊘",
    ServerStatus.SKIPPED: "-",
}


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
        case HistoryReply(runs):
            return history_text(runs)
        case AlertsReply(alerts, now, message):
            shown = [message] if message else []
            shown.extend(alert_line(a, now) for a in alerts)
            return "\n".join(shown) or "No stale-image alerts."
        case ScanReply():
            return scan_text(reply)
    raise AssertionError(reply)


def alert_line(alert: Alert, now: datetime) -> str:
    state = alert.state.value
    if alert.snoozed_until and alert.state == AlertState.SNOOZED:
        state += f" until {alert.snoozed_until:%Y-%m-%d}"
    verb = "roll" if alert.finding == "fleet" else "refresh"
    return (
        f"alert {alert.id:<4} {alert.app}/{alert.env} {alert.image_name} · {alert.finding}: "
        f"{alert.detail} · {state} → `{verb} {alert.app} --env {alert.env}` or "
        f"`snooze {alert.id}`"
    )


def scan_text(reply: ScanReply) -> str:
    lines = [f"{'app/env':<28} {'image':<28} {'age':>5}  findings"]
    for obs in reply.observations:
        where = f"{obs.app}/{obs.env}"
        if obs.image is None or obs.staleness is None:
            lines.append(f"{where:<28} {obs.ref:<28} {'-':>5}  ✗ {obs.error}")
            continue
        verdict = "fresh" if obs.staleness.fresh else obs.staleness.summary()
        lines.append(f"{where:<28} {obs.image.name:<28} {obs.staleness.age_days:>4}d  {verdict}")
    changes = reply.changes
    lines.append(
        f"{reply.findings} finding(s): {len(changes.new)} new alert(s), "
        f"{len(changes.reminded)} reminded, {len(changes.resolved)} resolved"
    )
    return "\n".join(lines)


def _verb(kind: RunKind) -> str:
    return {
        RunKind.SCALE_UP: "scale up",
        RunKind.SCALE_DOWN: "scale down",
        RunKind.REFRESH: "refresh image from a server",
        RunKind.BAKE: "bake image",
        RunKind.ROLL: "roll",
        RunKind.PRUNE: "prune images",
    }[kind]


def plan_text(plan: Plan, run: Run | None) -> str:
    title = f"run {run.id}" if run else "plan (dry run)"
    lines = [
        f"{title} · {_verb(plan.kind)} {plan.app}/{plan.env}: {plan.current} → {plan.desired}"
        f" {'image(s)' if plan.kind == RunKind.PRUNE else 'server(s)'}",
        f"  image     {plan.image.name} ({plan.image.id}), {plan.staleness.age_days} days old",
        f"  versions  {_versions(dict(plan.image.versions))}",
        f"  staleness {'fresh' if plan.staleness.fresh else '⚠ ' + plan.staleness.summary()}",
        f"  strategy  {plan.strategy.value} · target {plan.target} · requested by {plan.requester}",
    ]
    if plan.kind == RunKind.BAKE:
        lines.append("  builder   1 server from this image → bake → scrub → probes → snapshot")
    elif plan.kind == RunKind.ROLL:
        canary = " · canary first, then pause" if plan.canary else ""
        lines.append(
            f"  replaces  {len(plan.removals)} server(s) in batches of {plan.batch_size}, "
            f"surge first{canary}: " + ", ".join(s.id for s in plan.removals)
        )
    elif plan.kind == RunKind.PRUNE:
        lines.append("  deletes   " + ", ".join(f"{i.name} ({i.id})" for i in plan.images))
    elif plan.removals and plan.kind == RunKind.REFRESH:
        lines.append(f"  source    {plan.removals[0].id} (snapshot into a new image)")
    elif plan.removals:
        lines.append(
            "  removes   " + ", ".join(s.id for s in plan.removals) + " (oldest image first)"
        )
    if plan.approvals_needed:
        who = ", ".join(plan.approvers)
        lines.append(f"  approval  {plan.approvals_needed} needed from {who}")
    else:
        lines.append("  approval  not required")
    if run is not None:
        lines.append(_state_line(run))
    return "\n".join(lines)


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "none recorded"


def _state_line(run: Run) -> str:
    state = run.state.value.replace("_", " ")
    if run.state == RunState.AWAITING_APPROVAL:
        expires = run.expires_at.strftime("%H:%M UTC") if run.expires_at else "never"
        return (
            f"  state     {state} (expires {expires}) → type `approve {run.id}` or "
            f"`reject {run.id}`"
        )
    extra = f" · {run.reason}" if run.reason else ""
    by = f" · approved by {', '.join(run.approvers)}" if run.approvers else ""
    return f"  state     {state}{by}{extra}"


def server_line(run: Run, server: RunServer) -> str:
    step = server.step.value if server.step else "waiting"
    mark = STATUS_MARK[server.status]
    name = server.provider_id or server.key
    text = f"    {mark} {name:<22} {step:<9} {server.status.value}"
    if server.reason:
        text += f" · {server.reason}"
    if server.cleanup:
        text += f" · {server.cleanup}"

    return text


def run_text(run: Run) -> str:
    lines = [
        f"run {run.id} · {_verb(run.kind)} {run.app}/{run.env}: {run.current} → {run.desired}"
        f" · image {run.image_name}",
        _state_line(run),
    ]
    lines.extend(server_line(run, s) for s in run.servers)
    return "\n".join(lines)


def status_text(reply: StatusReply) -> str:
    out = []
    for env in reply.envs:
        out.append(f"{env.app}/{env.env}: {len(env.servers)} server(s)")
        if env.error:
            out.append(f"  ✗ could not list servers: {env.error}")
        for view in env.servers:
            age = f"{view.image_age_days} days old" if view.image_age_days is not None else "?"
            out.append(
                f"  {view.server.id:<24} {view.server.state.value:<8} image "
                f"{view.image_name} ({age}) · {_versions(dict(view.versions))}"
            )
        if env.others:
            out.append(f"  not managed here: {len(env.others)} server(s), never touched")
            out.extend(f"    {s.id:<24} {owner_label(s)}" for s in env.others)
        if env.active_run:
            run = env.active_run
            out.append(
                f"  in flight: run {run.id} ({run.state.value.replace('_', ' ')}, "
                f"{run.current} → {run.desired}, by {run.requester})"
            )
    return "\n".join(out) or "No apps configured."


def images_text(reply: ImagesReply) -> str:
    out = []
    for view in reply.images:
        if view.image is None or view.staleness is None:
            out.append(f"{view.app}/{view.env}: {view.ref} ✗ {view.error}")
            continue
        verdict = "fresh" if view.staleness.fresh else "⚠ " + view.staleness.summary()
        out.append(
            f"{view.app}/{view.env}: {view.image.name} ({view.image.id}) from {view.ref}, "
            f"{view.staleness.age_days} days old · {verdict}"
        )
        out.append(f"  recorded {_versions(dict(view.image.versions))}")
        out.append(f"  declared {_versions(view.declared)}")
    return "\n".join(out) or "No apps configured."


def history_text(runs: tuple[Run, ...]) -> str:
    if not runs:
        return "No runs yet."
    out = []
    for run in runs:
        approved = f", approved by {', '.join(run.approvers)}" if run.approvers else ""
        failed = sum(s.status == ServerStatus.FAILED for s in run.servers)
        tail = f", {failed} failed" if failed else ""
        out.append(
            f"run {run.id:<4} {_when(run.created_at)}  {run.app}/{run.env} "
            f"{_verb(run.kind)} {run.current} → {run.desired}  "
            f"{run.state.value.replace('_', ' ')}  (by {run.requester}{approved}{tail})"
        )
    return "\n".join(out)


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")
