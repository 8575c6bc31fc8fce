"""Block Kit built offline: valid for slack_sdk's models and within Slack's limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.slack.blocks import messages
from bot.slack.blocks.kit import MAX_BLOCKS, MAX_SECTION
from pipeline.domain.models import Run, RunKind, RunServer, RunState, ServerStatus, Step, Strategy
from pipeline.errors import UserError
from pipeline.services.replies import HistoryReply, ImagesReply, RunReply, StatusReply
from tests.conftest import START, World


def run(servers: int, state: RunState = RunState.RUNNING, **kw: Any) -> Run:
    slots = tuple(
        RunServer(
            1,
            i,
            f"byoi-abc123-1-{i}",
            ServerStatus.FAILED if i % 7 == 0 else ServerStatus.WORKING,
            Step.DEPLOY,
            f"i-{i:017d}",
            False,
            "deploy exited 3: " + "x" * 500 if i % 7 == 0 else None,
            None,
            None,
            START,
        )
        for i in range(1, servers + 1)
    )
    base = Run(
        1,
        RunKind.SCALE_UP,
        "web",
        "production",
        state,
        "UALICE",
        START,
        START,
        0,
        servers,
        "img-1",
        "web-base",
        Strategy.PARALLEL,
        5,
        "web-lb",
        2,
        START + timedelta(minutes=30),
        image_created_at=START - timedelta(days=40),
        image_versions={"ruby_version": "3.1.2"},
        notes=("40 days old (limit 30)", "ruby_version 3.1.2 → 3.2.2"),
        servers=slots,
    )
    return replace(base, **kw)


def check(blocks: list[dict[str, Any]]) -> None:
    assert 0 < len(blocks) <= MAX_BLOCKS
    for raw in blocks:
        parsed = Block.parse(raw)
        assert parsed is not None
        parsed.validate_json()
        text = raw.get("text", {}).get("text", "")
        assert len(text) <= MAX_SECTION


@pytest.mark.parametrize("state", list(RunState))
@pytest.mark.parametrize("servers", [0, 1, 25, 26, 500])
def test_run_cards_are_valid_in_every_state_and_size(state: RunState, servers: int) -> None:
    blocks = messages.run_card(run(servers, state), START)

    check(blocks)
    has_buttons = any(b["type"] == "actions" for b in blocks)
    assert has_buttons == (state == RunState.AWAITING_APPROVAL)


def test_large_fleets_are_summarised_with_failures_listed() -> None:
    text = messages.servers_text(run(500).servers)

    assert text.startswith("*500 servers:* 71 failed · 429 working (deploy)")
    assert "i-00000000000000007" in text
    assert len(text) <= MAX_SECTION


def test_buttons_carry_only_the_run_id_and_ask_for_confirmation() -> None:
    (actions,) = [
        b
        for b in messages.run_card(run(2, RunState.AWAITING_APPROVAL), START)
        if b["type"] == "actions"
    ]

    assert [e["action_id"] for e in actions["elements"]] == ["run_approve", "run_reject"]
    assert {e["value"] for e in actions["elements"]} == {"1"}
    assert all("confirm" in e for e in actions["elements"])


def test_user_text_cannot_mention_or_link() -> None:
    blocks = messages.run_card(run(1, reason="<!channel> <http://evil|x>"), START)

    assert "<!channel>" not in str(blocks) and "&lt;!channel&gt;" in str(blocks)


def test_every_reply_renders_valid_blocks(world: World) -> None:
    world.scale_and_approve("scale web 2")
    now = world.clock()
    replies = [
        world.say("status"),
        world.say("images"),
        world.say("history"),
        world.say("help"),
        world.say("scale web 3 --dry-run"),
        HistoryReply(()),
        RunReply(None, None, "message only"),
    ]
    for reply in replies:
        text, blocks = messages.reply_blocks(reply, now)
        assert text
        check(blocks)


def test_every_error_renders_valid_blocks(world: World) -> None:
    errors = [world.say("scale nope 1", expect=UserError), UserError("x" * 5000, "usage")]
    for error in errors:
        text, blocks = messages.error_blocks(error)
        assert text.startswith(":warning: ")
        check(blocks)


def test_the_home_view_is_valid(world: World) -> None:
    world.scale_and_approve("scale web 2")
    view = messages.home_view(
        world.say("status", expect=StatusReply), world.say("images", expect=ImagesReply)
    )

    View(**view).validate_json()
    assert len(view["blocks"]) <= 100
