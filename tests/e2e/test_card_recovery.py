"""Cards reach their final state across a restart, however Slack behaved before it."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

from bot.slack import cardpost
from tests.conftest import make_world, today
from tests.e2e.slackbot import SLACK_CONFIG, running_bot, serving
from tests.fakes.slack_api import Call, FakeSlack, text_of


def run_state(root: Path, run_id: int) -> str:
    db = sqlite3.connect(root / "byoi.db")
    try:
        (state,) = db.execute("SELECT state FROM runs WHERE id = ?", [run_id]).fetchone()
    finally:
        db.close()
    return str(state)


def summaries(fake: FakeSlack) -> list[Call]:
    return [c for c in fake.sent("chat.postMessage") if c.params.get("reply_broadcast")]


def final_cards(fake: FakeSlack) -> list[Call]:
    return [c for c in fake.sent("chat.update") if "succeeded" in text_of(c)]


def test_a_run_finished_while_slack_said_429_gets_its_final_card_after_kill_and_restart(
    tmp_path: Path,
) -> None:
    fake = FakeSlack()
    with running_bot(tmp_path, fake=fake) as bot:
        bot.command("scale web 2")
        fake.wait_for(lambda: fake.sent("chat.postMessage"))
        for method in ("chat.update", "chat.postMessage"):
            fake.fail(method, 429, times=10_000, retry_after=30)
        bot.click("run_approve", 1, "UBOB")
        fake.wait_for(lambda: run_state(tmp_path, 1) == "succeeded")
        bot.process.send_signal(signal.SIGKILL)
        bot.process.wait(10)
    assert final_cards(fake) == [] and summaries(fake) == []  # the repro's starting point

    fake.heal()
    fake.start()
    try:
        with serving(tmp_path, fake, log_name="serve2.log"):
            fake.wait_for(lambda: final_cards(fake))
            (summary,) = fake.wait_for(lambda: summaries(fake))
        with serving(tmp_path, fake, log_name="serve3.log"):  # and once more: nothing repeated
            pass
    finally:
        fake.stop()

    (card,) = [c for c in fake.sent("chat.postMessage") if not c.params.get("thread_ts")]
    assert summary.params["thread_ts"] == final_cards(fake)[-1].params["ts"]
    assert "Run 1 succeeded" in summary.params["text"]
    assert len(summaries(fake)) == 1
    assert "run_approve" not in text_of(final_cards(fake)[-1])
    assert "run_approve" in text_of(card)


def cards_in_channel(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    """byoi's run cards among the channel's own messages (Slack's record, not byoi's)."""
    return [
        m
        for (ch, _), m in sorted(fake.messages.items())
        if ch == channel
        and not m.get("thread_ts")
        and "metadata" in m
        and m["metadata"]["event_type"] == cardpost.EVENT_TYPE
    ]


def test_a_kill_after_slack_took_the_card_never_posts_a_second_card(tmp_path: Path) -> None:
    world = make_world(tmp_path, SLACK_CONFIG, now=today())
    world.store.close()
    fake = FakeSlack().start()
    hold = fake.hold("chat.postMessage", lambda params: not params.get("thread_ts"))
    try:
        with serving(tmp_path, fake) as bot:
            bot.command("scale web 2")
            assert hold.accepted.wait(60), bot.logs()
            bot.process.kill()  # Slack has the card; byoi never hears where it is
            bot.process.wait(10)
            hold.release.set()
        with serving(tmp_path, fake, log_name="restart.log") as bot:
            bot.click("run_approve", 1, "UBOB")
            fake.wait_for(lambda: run_state(tmp_path, 1) == "succeeded", timeout=90)
            fake.wait_for(lambda: final_cards(fake) and summaries(fake), timeout=60)
            logs = bot.logs()
    finally:
        fake.stop()

    (card,) = cards_in_channel(fake, "C111")
    assert card["metadata"]["event_payload"]["run"] == 1
    assert final_cards(fake)[-1].params["ts"] == card["ts"]  # the one card, edited to its end
    assert summaries(fake)[0].params["thread_ts"] == card["ts"]
    assert fake.sent("conversations.history")  # looked up, not posted again
    assert "adopted the card a crash left posted" in logs
