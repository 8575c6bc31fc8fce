"""Cards reach their final state across a restart, however Slack behaved before it."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from tests.e2e.slackbot import running_bot, serving
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
