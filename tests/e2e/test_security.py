"""Security over real HTTP: replays, channels, authorisation by text, secrets, and load."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import config_text
from tests.e2e.slackbot import SECRET, TOKEN, running_bot, slash_body
from tests.fakes.slack_api import text_of

AWS_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def test_a_replayed_request_is_refused(tmp_path: Path) -> None:
    with running_bot(tmp_path) as bot:
        body = slash_body("scale web 2", "W111", "C111", bot.fake.response_url)
        stamp = int(time.time())

        first, _, _ = bot.post(body, "application/x-www-form-urlencoded", timestamp=stamp)
        replay, answer, _ = bot.post(body, "application/x-www-form-urlencoded", timestamp=stamp)

        assert (first, replay) == (200, 401)
        assert "replayed" in answer
        bot.fake.wait_for(lambda: bot.fake.sent("chat.postMessage"))
        bot.command("history")  # answered after anything queued before it
        bot.fake.wait_for(lambda: bot.fake.sent("respond"))
        assert len(bot.fake.sent("chat.postMessage")) == 1
        assert [e for _, e in bot.events()].count("requested") == 1


def test_a_run_cannot_be_approved_from_another_channel(tmp_path: Path) -> None:
    with running_bot(tmp_path) as bot:
        bot.command("scale web 2", channel="C111")
        bot.fake.wait_for(lambda: bot.fake.sent("chat.postMessage"))

        bot.command("approve 1", user="UBOB", channel="C999")

        said = bot.fake.wait_for(lambda: bot.fake.sent("respond"))
        assert "belongs to another channel" in said[0].params["text"]
        state = (
            sqlite3.connect(tmp_path / "byoi.db")
            .execute("SELECT state FROM runs WHERE id = 1")
            .fetchone()
        )
        assert state == ("awaiting_approval",)


def test_text_commands_follow_the_same_rules_as_buttons(tmp_path: Path) -> None:
    config = config_text(operators='["UBOB"]', approvers='["UBOB", "UCAROL"]')
    with running_bot(tmp_path, config) as bot:
        bot.command("scale web 2", user="UMALLORY")
        bot.command("scale web 2", user="UBOB")
        bot.fake.wait_for(lambda: bot.fake.sent("chat.postMessage"))
        bot.command("approve 1", user="UMALLORY")
        bot.command("approve 1", user="UBOB")  # the requester, who is also an approver

        said = bot.fake.wait_for(
            lambda: (lambda r: r if len(r) >= 3 else [])(
                [c.params["text"] for c in bot.fake.sent("respond")]
            )
        )
        assert any("not an operator" in s for s in said)
        assert any("You are not an approver" in s for s in said)
        assert any("someone else has to approve it" in s for s in said)


def test_no_secret_reaches_a_log_a_message_or_the_database(tmp_path: Path) -> None:
    env = {"AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE1234567"}
    with running_bot(tmp_path, env=env) as bot:
        bot.command("scale web 2")
        bot.fake.wait_for(lambda: bot.fake.sent("chat.postMessage"))
        bot.click("run_approve", 1, "UBOB")
        bot.fake.wait_for(
            lambda: any("succeeded" in text_of(c) for c in bot.fake.sent("chat.update"))
        )
        bot.command("status")
        bot.command("history")
        bot.fake.wait_for(lambda: len(bot.fake.sent("respond")) >= 2)
        log = bot.logs()
        messages = json.dumps([c.params for c in bot.fake.calls])

    database = "\n".join(sqlite3.connect(tmp_path / "byoi.db").iterdump())
    for secret in (TOKEN, SECRET, AWS_SECRET, "AKIAEXAMPLE1234567"):
        assert secret not in log
        assert secret not in messages
        assert secret not in database
    assert "byoi-" in database  # the scan read real content


def test_fifty_concurrent_commands_across_ten_apps_start_one_run_each(tmp_path: Path) -> None:
    apps = "\n".join(
        f"  app{n}:\n    manifest: manifest.yml\n    provider: local\n    default_env: staging\n"
        f"    image: family:web\n    operators: ['*']\n    approvers: [UBOB]\n"
        f"    deploy_command: 'true'"
        for n in range(10)
    )
    config = config_text(operators="['*']") + apps + "\n"
    with running_bot(tmp_path, config) as bot:
        barrier = threading.Barrier(50)

        def send(n: int) -> tuple[int, float]:
            barrier.wait()
            status, _, seconds = bot.command(f"scale app{n % 10} {n // 10 + 1}", user=f"U{n:04d}")
            return status, seconds

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(send, range(50)))
        bot.fake.wait_for(
            lambda: (
                len(bot.fake.sent("chat.postMessage")) >= 10 and len(bot.fake.sent("respond")) >= 40
            ),
            timeout=60,
        )

        assert all(status == 200 for status, _ in results)
        assert max(seconds for _, seconds in results) < 3
        db = sqlite3.connect(tmp_path / "byoi.db")
        per_app = db.execute("SELECT app, count(*) FROM runs GROUP BY app").fetchall()
        assert sorted(per_app) == [(f"app{n}", 1) for n in range(10)]
        refusals = [c.params["text"] for c in bot.fake.sent("respond")]
        assert len(refusals) == 40
        assert all("already has run" in r and "Wait for it, or `cancel" in r for r in refusals)
