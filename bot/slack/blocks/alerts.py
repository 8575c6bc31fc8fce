"""Block Kit for stale-image alerts: the card with Refresh and Snooze, reminders, the list."""

from __future__ import annotations

from datetime import datetime

from bot.slack.blocks.kit import Block, context, escape, section, who
from pipeline.domain.alerts import Alert, AlertState
from pipeline.services.replies import AlertsReply

ALERT_REFRESH = "alert_refresh"
ALERT_SNOOZE = "alert_snooze"
ALERT_ROLL = "alert_roll"
FINDING_TITLE = {
    "age": "too old",
    "drift": "drifted from the manifest",
    "unknown": "versions unknown",
    "deprecated": "deprecated",
    "obsolete": "obsolete",
    "fleet": "not what the fleet runs",
}


def alert_card(alert: Alert, now: datetime) -> list[Block]:
    """One card per (app, env, image, finding), with Refresh and Snooze while it is open."""
    title = FINDING_TITLE.get(alert.finding, alert.finding)
    head = (
        f":rotating_light: *Stale image* · *{alert.app}/{alert.env}* · "
        f"`{escape(alert.image_name)}` is {title}"
    )
    if alert.state == AlertState.RESOLVED:
        when = alert.resolved_at.strftime("%Y-%m-%d %H:%M") if alert.resolved_at else "now"
        return [
            section(
                f":white_check_mark: ~Stale image~ · *{alert.app}/{alert.env}* · "
                f"`{escape(alert.image_name)}` was {title}: resolved {when} UTC "
                "(the image was refreshed or the manifest changed)."
            ),
            context(f"alert {alert.id} · {escape(alert.detail)}"),
        ]
    blocks: list[Block] = [
        section(head),
        section(
            f"*What* {escape(alert.detail)}\n*Since* {alert.first_seen:%Y-%m-%d} · "
            f"last checked {alert.last_seen:%Y-%m-%d %H:%M} UTC"
        ),
    ]
    if alert.state == AlertState.SNOOZED and alert.snoozed_until:
        blocks.append(
            context(
                f":zzz: snoozed until {alert.snoozed_until:%Y-%m-%d} by "
                f"{who(alert.snoozed_by or '?')} · alert {alert.id}"
            )
        )
    else:
        verb = "roll" if alert.finding == "fleet" else "refresh"
        blocks.append(
            context(
                f"alert {alert.id} · text: `/byoi {verb} {alert.app} --env "
                f"{alert.env}` or `/byoi snooze {alert.id}`"
            )
        )
    elements = [_roll_button(alert) if alert.finding == "fleet" else _refresh_button(alert)]
    if alert.state == AlertState.OPEN:
        elements.append(
            {
                "type": "button",
                "action_id": ALERT_SNOOZE,
                "value": str(alert.id),
                "text": {"type": "plain_text", "text": "Snooze 7 days"},
            }
        )
    blocks.append({"type": "actions", "block_id": f"alert-{alert.id}", "elements": elements})
    return blocks


def _refresh_button(alert: Alert) -> Block:
    return {
        "type": "button",
        "action_id": ALERT_REFRESH,
        "style": "primary",
        "value": str(alert.id),
        "text": {"type": "plain_text", "text": "Refresh image"},
        "confirm": {
            "title": {"type": "plain_text", "text": "Refresh this image?"},
            "text": {
                "type": "mrkdwn",
                "text": f"Bake a new {alert.app}/{alert.env} image on a builder server; "
                "it is published only if its measured versions match (approval applies).",
            },
            "confirm": {"type": "plain_text", "text": "Refresh"},
            "deny": {"type": "plain_text", "text": "Back"},
        },
    }


def _roll_button(alert: Alert) -> Block:
    return {
        "type": "button",
        "action_id": ALERT_ROLL,
        "style": "primary",
        "value": str(alert.id),
        "text": {"type": "plain_text", "text": "Roll"},
        "confirm": {
            "title": {"type": "plain_text", "text": "Roll the fleet?"},
            "text": {
                "type": "mrkdwn",
                "text": f"Replace the {alert.app}/{alert.env} servers that differ from the "
                "current image, one batch at a time (approval applies).",
            },
            "confirm": {"type": "plain_text", "text": "Roll"},
            "deny": {"type": "plain_text", "text": "Back"},
        },
    }


def alert_reminder(alert: Alert, now: datetime) -> str:
    days = max(0, (now - alert.first_seen).days)
    return (
        f":alarm_clock: Still stale after {days} day(s): {alert.app}/{alert.env} "
        f"`{escape(alert.image_name)}` — {escape(alert.detail)}"
    )


def alerts_blocks(reply: AlertsReply) -> list[Block]:
    lines = [reply.message] if reply.message else []
    for alert in reply.alerts[:40]:
        state = alert.state.value
        lines.append(
            f"*alert {alert.id}* {alert.app}/{alert.env} `{escape(alert.image_name)}` · "
            f"{FINDING_TITLE.get(alert.finding, alert.finding)}: {escape(alert.detail)} "
            f"· {state}"
        )
    return [section("\n".join(lines) or "No stale-image alerts.")]
