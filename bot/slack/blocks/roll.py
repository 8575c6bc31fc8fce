"""Block Kit for the image lifecycle: roll progress by batch, canary buttons, the roll offer."""

from __future__ import annotations

from bot.slack.blocks.kit import Block, context
from pipeline.domain import roll
from pipeline.domain.measured import RunImage, RunOptions
from pipeline.domain.models import Run, RunKind, RunState

ROLL_CONTINUE = "roll_continue"
ROLL_BACK = "roll_back"
ROLL_OFFER = "roll_offer"


def _button(label: str, action: str, value: int, style: str | None = None) -> Block:
    button: Block = {
        "type": "button",
        "action_id": action,
        "text": {"type": "plain_text", "text": label},
        "value": str(value),
    }
    if style:
        button["style"] = style
    return button


def roll_blocks(run: Run, options: RunOptions | None) -> list[Block]:
    """Progress by batch; while paused after the canary, Continue and Roll back."""
    if run.kind != RunKind.ROLL or options is None:
        return []
    blocks = [context(roll.progress(run, run.max_parallel, options.canary))]
    if options.paused and run.state == RunState.RUNNING:
        back = _button("Roll back", ROLL_BACK, run.id, "danger")
        back["confirm"] = {
            "title": {"type": "plain_text", "text": f"Roll back run {run.id}?"},
            "text": {"type": "mrkdwn", "text": "The canary is removed; old servers stay."},
            "confirm": {"type": "plain_text", "text": "Roll back"},
            "deny": {"type": "plain_text", "text": "Back"},
        }
        blocks.append(
            {
                "type": "actions",
                "block_id": f"run-{run.id}-canary",
                "elements": [_button("Continue", ROLL_CONTINUE, run.id, "primary"), back],
            }
        )
    return blocks


def roll_offer(run: Run, image: RunImage | None) -> list[Block]:
    """After a refresh published an image: a button to roll the fleet onto it."""
    if image is None or not image.published or run.current == 0:
        return []
    return [
        {
            "type": "actions",
            "block_id": f"run-{run.id}-offer",
            "elements": [
                _button(f"Roll {run.current} servers onto it", ROLL_OFFER, run.id, "primary")
            ],
        }
    ]
