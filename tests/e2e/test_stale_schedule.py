"""The stale-image schedule in a running `byoi serve`: cards, buttons, a restart mid-schedule."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

from tests.conftest import IMAGE_FILES, World, config_text
from tests.e2e.slackbot import running_bot
from tests.fakes.slack_api import FakeSlack, text_of

INTERVAL = 4
# The restart test gives the restarted process room to start on a loaded machine: its checks
# are asserted against the schedule's grid, so a start slower than the interval would blur them.
RESTART_INTERVAL = 8


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
        created_at=world.clock() - timedelta(days=1),
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


def wait_until(moment: datetime) -> None:
    """Wait (on the clock, with a bound) until ``moment`` has passed."""
    deadline = time.monotonic() + 60
    while datetime.now(moment.tzinfo) <= moment:
        assert time.monotonic() < deadline, f"{moment} never came"
        time.sleep(0.05)


def test_a_restart_neither_drops_nor_doubles_the_next_due_check(tmp_path: Path) -> None:
    with running_bot(tmp_path, config(RESTART_INTERVAL)) as bot:
        first = wait_scans(tmp_path, 1)[0]
        bot.process.send_signal(signal.SIGKILL)
        bot.process.wait(10)
    # The next check is missed while byoi is down.
    wait_until(first + timedelta(seconds=RESTART_INTERVAL + 1))

    with running_bot(tmp_path, config(RESTART_INTERVAL)) as bot:
        caught_up, on_grid = wait_scans(tmp_path, 3, timeout=RESTART_INTERVAL * 6)[1:3]
        log = bot.logs()

    # The persisted due time survived the kill (it was not reset to "an interval from now")...
    due = re.findall(r"next at (\S+ \S+)", log)[0]
    persisted = datetime.fromisoformat(due)
    expected = first + timedelta(seconds=RESTART_INTERVAL)
    assert abs((persisted - expected).total_seconds()) < 1.5, due
    # ...so the missed check ran once on start, and the next one keeps to the schedule.
    assert log.count(f"(scheduled at {due})") == 1
    offset = (on_grid - first).total_seconds() % RESTART_INTERVAL
    assert min(offset, RESTART_INTERVAL - offset) < 1.5, (first, caught_up, on_grid)
    assert (on_grid - caught_up).total_seconds() > 0.5  # not run twice
