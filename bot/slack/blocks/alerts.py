"""Block Kit for stale-image alerts: the card with Refresh and Snooze, reminders, the list."""

from __future__ import annotations

from datetime import datetime

from bot.slack.blocks.kit import Block, context, escape, section, who
from bot.views.alerts import AlertView, alert_view
from bot.views.words import NO_ALERTS, usage_line
from pipeline.domain.alerts import Alert, AlertState
from pipeline.services.replies import AlertsReply

ALERT_REFRESH = "alert_refresh"
ALERT_SNOOZE = "alert_snooze"
ALERT_ROLL = "alert_roll"


def alert_card(alert: Alert, now: datetime) -> list[Block]:
    """One card per (app, env, image, finding), with Refresh and Snooze while it is open."""
    view = alert_view(alert)
    if view.state == AlertState.RESOLVED:
        return _resolved(view)
    return [
        section(
            f":rotating_light: *Stale image* · *{view.where}* · "
            f"`{escape(view.image_name)}` is {view.title}"
        ),
        section(
            f"*What* {escape(view.detail)}\n*Since* {view.since} · last checked {view.checked} UTC"
        ),
        context(_standing(view)),
        {"type": "actions", "block_id": f"alert-{view.id}", "elements": _buttons(view)},
    ]


def _resolved(view: AlertView) -> list[Block]:
    return [
        section(
            f":white_check_mark: ~Stale image~ · *{view.where}* · "
            f"`{escape(view.image_name)}` was {view.title}: resolved {view.resolved} UTC "
            "(the image was refreshed or the manifest changed)."
        ),
        context(f"alert {view.id} · {escape(view.detail)}"),
    ]


def _standing(view: AlertView) -> str:
    """Who snoozed it until when, or the commands that fix or snooze it."""
    if view.state == AlertState.SNOOZED and view.until:
        return f":zzz: {view.standing} by {who(view.snoozed_by)} · alert {view.id}"
    return f"alert {view.id} · text: `{usage_line(view.fix)}` or `{usage_line(view.snooze)}`"


def _buttons(view: AlertView) -> list[Block]:
    if view.rolls:
        fix = _button(
            view,
            ALERT_ROLL,
            "Roll",
            question="Roll the fleet?",
            says=f"Replace the {view.where} servers that differ from the current image, "
            "one batch at a time (approval applies).",
        )
    else:
        fix = _button(
            view,
            ALERT_REFRESH,
            "Refresh image",
            question="Refresh this image?",
            says=f"Bake a new {view.where} image on a builder server; it is published only "
            "if its measured versions match (approval applies).",
            yes="Refresh",
        )
    if not view.open:
        return [fix]
    snooze: Block = {
        "type": "button",
        "action_id": ALERT_SNOOZE,
        "value": str(view.id),
        "text": {"type": "plain_text", "text": "Snooze 7 days"},
    }
    return [fix, snooze]


def _button(
    view: AlertView, action: str, label: str, *, question: str, says: str, yes: str = ""
) -> Block:
    """A primary button on the alert that asks first (``yes``: its answer, else ``label``)."""
    return {
        "type": "button",
        "action_id": action,
        "style": "primary",
        "value": str(view.id),
        "text": {"type": "plain_text", "text": label},
        "confirm": {
            "title": {"type": "plain_text", "text": question},
            "text": {"type": "mrkdwn", "text": says},
            "confirm": {"type": "plain_text", "text": yes or label},
            "deny": {"type": "plain_text", "text": "Back"},
        },
    }


def alert_fallback(alert: Alert) -> str:
    """An alert card's notification text."""
    view = alert_view(alert)
    return (
        f"Stale image for {view.where}: {view.image_name} "
        f"({view.finding}: {view.detail}) · {view.state_words}"
    )


def alert_reminder(alert: Alert, now: datetime) -> str:
    view = alert_view(alert)
    return (
        f":alarm_clock: Still stale after {view.days_open(now)} day(s): {view.where} "
        f"`{escape(view.image_name)}` — {escape(view.detail)}"
    )


def alerts_blocks(reply: AlertsReply) -> list[Block]:
    lines = [reply.message] if reply.message else []
    for view in map(alert_view, reply.alerts[:40]):
        lines.append(
            f"*alert {view.id}* {view.where} `{escape(view.image_name)}` · "
            f"{view.title}: {escape(view.detail)} · {view.state_words}"
        )
    return [section("\n".join(lines) or NO_ALERTS)]
