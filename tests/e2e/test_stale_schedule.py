"""The stale-image schedule in a running `byoi serve`: cards, buttons, a restart mid-schedule."""

from __future__ import annotations

import itertools
import signal
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

from tests.conftest import IMAGE_FILES, START, World, config_text
from tests.e2e.slackbot import running_bot
from tests.fakes.slack_api import FakeSlack, text_of

INTERVAL = 4


def config(interval: float = INTERVAL) -> str:
    return f"stale:\n  interval_seconds: {interval}\n" + config_text(
        operators='["W111", "UALICE"]', approvers='["UBOB", "UCAROL"]', channel="C0ALERTS"
    )


def drift(world: World) -> None:
    world.provider.create_image(
        "web-old",
        IMAGE_FILES,
        family="web",
        versions={"ruby_version": "3.1.2", "operating_system": "ubuntu2204"},
        created_at=START + timedelta(days=1),
    )


def scans(root: Path) -> list[datetime]:
    db = sqlite3.connect(root / "byoi.db")
    try:
        rows = db.execute("SELECT at FROM scans WHERE trigger = 'schedule' ORDER BY id").fetchall()
    finally:
        db.close()
    return [datetime.fromisoformat(r[0]) for r in rows]


def wait_scans(root: Path, count: int, timeout: float = 30) -> list[datetime]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = scans(root)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"only {len(scans(root))} scheduled scan(s)")


def test_alert_buttons_snooze_and_refresh_through_slack(tmp_path: Path) -> None:
    fake = FakeSlack()
    with running_bot(tmp_path, config(interval=2), fake=fake, before=drift) as bot:

        def alert_cards() -> list[object]:
            found = [c for c in fake.sent("chat.postMessage") if "alert_refresh" in text_of(c)]
            return found if len(found) >= 2 else []

        cards = fake.wait_for(alert_cards)
        assert len(cards) == 2  # staging and production drifted

        assert "ruby_version 3.1.2 → 3.2.2" in text_of(cards[0])
        bot.command("scale web 1")
        fake.wait_for(lambda: any("Run 1" in text_of(c) for c in fake.sent("chat.postMessage")))
        bot.click("run_approve", 1, "UBOB")
        fake.wait_for(lambda: any("succeeded" in text_of(c) for c in fake.sent("chat.update")))

        bot.click("alert_snooze", 2, "UBOB")
        fake.wait_for(lambda: any("snoozed until" in text_of(c) for c in fake.sent("chat.update")))
        bot.click("alert_refresh", 1, "UALICE")
        fake.wait_for(
            lambda: any(
                "Run 2" in text_of(c) and "bake image" in text_of(c)
                for c in fake.sent("chat.postMessage")
            )
        )
        bot.click("run_approve", 2, "UBOB")

        resolved = fake.wait_for(
            lambda: [c for c in fake.sent("chat.update") if "resolved" in text_of(c)], timeout=40
        )
        assert "alert_refresh" not in text_of(resolved[0])


def test_a_restart_neither_drops_nor_doubles_the_next_due_check(tmp_path: Path) -> None:
    with running_bot(tmp_path, config()) as bot:
        first = wait_scans(tmp_path, 1)[0]
        time.sleep(0.5)
        bot.process.send_signal(signal.SIGKILL)
        bot.process.wait(10)
    # The check due at first + INTERVAL passes while byoi is down.
    time.sleep(
        max(
            0.0,
            (
                first + timedelta(seconds=INTERVAL + 1.5) - datetime.now(first.tzinfo)
            ).total_seconds(),
        )
    )
    restarted = datetime.now(first.tzinfo)

    with running_bot(tmp_path, config()):
        wait_scans(tmp_path, 3, timeout=INTERVAL * 4)
        time.sleep(0.5)

    found = scans(tmp_path)
    next_due = first + timedelta(seconds=2 * INTERVAL - 1)  # the one after the missed one
    caught_up = [t for t in found if restarted <= t < next_due]
    assert len(caught_up) == 1, found  # the missed check ran once, right after the restart
    assert (caught_up[0] - restarted).total_seconds() < INTERVAL - 1
    later = [t for t in found if t >= next_due]

    assert len(later) >= 1
    assert all((b - a).total_seconds() > 0.5 for a, b in itertools.pairwise(found))
