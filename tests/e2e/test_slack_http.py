"""The Slack bot over real HTTP: signed requests in, calls to a fake Slack Web API out."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

from tests.e2e.slackbot import TOKEN, Bot, running_bot
from tests.fakes.slack_api import FakeSlack, text_of


def card_calls(bot: Bot) -> list[str]:
    """The run card as posted and as edited (thread replies are not the card)."""
    calls = bot.fake.sent("chat.postMessage") + bot.fake.sent("chat.update")
    return [text_of(c) for c in calls if not c.params.get("thread_ts")]


def wait_card(bot: Bot, needle: str) -> str:
    return bot.fake.wait_for(lambda: next((t for t in card_calls(bot) if needle in t), None))


def test_scale_up_from_slash_command_to_summary_in_the_thread(tmp_path: Path) -> None:
    with running_bot(tmp_path) as bot:
        status, _body, seconds = bot.command("scale web 3")
        assert status == 200 and seconds < 3

        plan = wait_card(bot, "Run 1")
        assert "awaiting approval" in plan and "run_approve" in plan and "run_reject" in plan
        assert "web-base" in plan and "ruby_version 3.2.2" in plan
        (parent,) = bot.fake.sent("chat.postMessage")
        assert parent.params["channel"] == "C111"

        status, _, seconds = bot.click("run_approve", 1, "UBOB")
        assert status == 200 and seconds < 3

        final = wait_card(bot, "succeeded")
        assert "run_approve" not in final
        assert final.count(":white_check_mark: `byoi-") == 3
        summary = bot.fake.wait_for(
            lambda: [
                c for c in bot.fake.sent("chat.postMessage") if c.params.get("reply_broadcast")
            ]
        )
        assert summary[0].params["thread_ts"] == bot.fake.sent("chat.update")[0].params["ts"]
        assert "Run 1 succeeded" in summary[0].params["text"]
        assert len(bot.fake.sent("chat.postMessage")) == 7  # the card, 5 phases, the summary
        card_edits = [c for c in bot.fake.sent("chat.update") if c.ts == parent.ts]
        gaps = [b.at - a.at for a, b in itertools.pairwise(card_edits)]
        assert all(gap >= 1.9 for gap in gaps), gaps  # coalesced to one edit per ~2 s
        assert TOKEN not in bot.logs()


def test_input_errors_are_answered_in_the_ack_with_the_usage_line(tmp_path: Path) -> None:
    with running_bot(tmp_path) as bot:
        status, body, _ = bot.command("scale web lots")
        unknown_status, _, _ = bot.command("scale nope 2")

        reply = json.loads(body)
        assert status == 200 and reply["response_type"] == "ephemeral"
        assert "`lots` is not a server count" in reply["text"]
        assert "Usage: `/byoi scale <app>" in reply["text"]
        assert unknown_status == 200
        respond = bot.fake.wait_for(lambda: bot.fake.sent("respond"))
        assert "Unknown app `nope` (apps: web)." in respond[0].params["text"]
        assert respond[0].params["response_type"] == "ephemeral"
        assert bot.fake.sent("chat.postMessage") == []


def test_forged_and_stale_requests_get_401(tmp_path: Path) -> None:
    with running_bot(tmp_path) as bot:
        forged, _, _ = bot.command("scale web 2", secret="not-the-secret")
        stale, _, _ = bot.command("scale web 2", timestamp=int(time.time()) - 6 * 60)

        assert (forged, stale) == (401, 401)
        bot.command("history")  # a real one, answered after anything queued before it
        bot.fake.wait_for(lambda: bot.fake.sent("respond"))
        assert bot.fake.sent("chat.postMessage") == []
        assert bot.events() == []


def test_a_non_approver_click_is_refused_and_audited(tmp_path: Path) -> None:
    with running_bot(tmp_path) as bot:
        bot.command("scale web 2")
        wait_card(bot, "Run 1")

        bot.click("run_approve", 1, "UMALLORY")

        refusal = bot.fake.wait_for(lambda: bot.fake.sent("respond"))
        assert "You are not an approver for web/staging." in refusal[0].params["text"]
        import sqlite3

        db = sqlite3.connect(tmp_path / "byoi.db")
        events = db.execute("SELECT actor, event FROM audit WHERE run_id = 1").fetchall()
        assert ("UMALLORY", "approval_refused") in events
        state = db.execute("SELECT state FROM runs WHERE id = 1").fetchone()
        assert state == ("awaiting_approval",)


def test_a_double_click_by_two_approvers_starts_one_run(tmp_path: Path) -> None:
    with running_bot(tmp_path) as bot:
        bot.command("scale web 2")
        wait_card(bot, "Run 1")
        barrier = threading.Barrier(3)

        def click(user: str) -> None:
            barrier.wait()
            bot.click("run_approve", 1, user)

        threads = [threading.Thread(target=click, args=(u,)) for u in ("UBOB", "UCAROL", "UBOB")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_card(bot, "succeeded")

        servers = list((tmp_path / "local/servers").glob("*/server.json"))
        assert len(servers) == 2
        said = [c.params["text"] for c in bot.fake.sent("respond")]
        assert any("already" in s for s in said)


def test_rate_limited_updates_still_end_with_the_final_card(tmp_path: Path) -> None:
    fake = FakeSlack()
    with running_bot(tmp_path, fake=fake) as bot:
        bot.command("scale web 2")
        wait_card(bot, "Run 1")
        fake.fail("chat.update", 429, times=3, retry_after=1)

        bot.click("run_approve", 1, "UBOB")

        wait_card(bot, "succeeded")
        limited = [c for c in fake.sent("chat.update", ok_only=False) if c.status == 429]
        assert len(limited) == 3
        last = fake.sent("chat.update")[-1]
        assert "succeeded" in text_of(last)


def test_server_errors_on_updates_are_retried(tmp_path: Path) -> None:
    fake = FakeSlack()
    with running_bot(tmp_path, fake=fake) as bot:
        bot.command("scale web 1")
        wait_card(bot, "Run 1")
        fake.fail("chat.update", 500, times=2)

        bot.click("run_approve", 1, "UBOB")

        wait_card(bot, "succeeded")
        assert len([c for c in fake.sent("chat.update", ok_only=False) if c.status == 500]) == 2


def test_slack_user_groups_can_approve(tmp_path: Path) -> None:
    fake = FakeSlack(groups={"S0OPS": ["UDAVE"]})
    with running_bot(tmp_path, fake=fake) as bot:
        bot.command("scale web 1")
        wait_card(bot, "Run 1")

        bot.click("run_approve", 1, "UDAVE")

        wait_card(bot, "succeeded")


def test_app_home_shows_apps_servers_and_images(tmp_path: Path) -> None:
    from tests.e2e.slackbot import PAYLOADS

    with running_bot(tmp_path) as bot:
        payload = json.loads((PAYLOADS / "event.app_home_opened.json").read_text())

        status, _, seconds = bot.event(payload)

        assert status == 200 and seconds < 3
        (published,) = bot.fake.wait_for(lambda: bot.fake.sent("views.publish"))
        view = published.params["view"]
        view = json.loads(view) if isinstance(view, str) else view
        assert published.params["user_id"] == "W111"
        assert view["type"] == "home"
        text = json.dumps(view)
        assert "web/staging" in text and "web-base" in text


def test_a_button_byoi_does_not_know_is_acknowledged_and_logged_in_one_line(
    tmp_path: Path,
) -> None:
    with running_bot(tmp_path) as bot:
        status, _, _ = bot.click("from_another_version", 1, "UBOB")
        assert status == 200
        bot.fake.wait_for(lambda: "ignored a click on a button" in bot.logs())
        logs = bot.logs()
    assert "from_another_version" in logs
    assert "Suggestion" not in logs and "Traceback" not in logs


def test_healthz_and_unknown_paths(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    with running_bot(tmp_path) as bot:
        with urllib.request.urlopen(f"{bot.url}/healthz", timeout=5) as response:
            assert json.loads(response.read()) == {"ok": True}
        try:
            urllib.request.urlopen(f"{bot.url}/nope", timeout=5)
            raise AssertionError("expected 404")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
