"""A run's thread over HTTP: one reply per step phase (a roll: per batch), edited to its final
counts and durations, a reply per failed server and the summary, within Slack's budgets (posts
per second per channel, edits per message); and none posted twice when byoi is killed between
Slack taking a reply and byoi storing where it is."""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from bot.slack.thread import EVENT_TYPE, phase_text
from pipeline.domain.models import RunState
from pipeline.services.display import Display
from pipeline.state.store import Store
from tests.conftest import DEPLOY_OK, IMAGE_FILES, World, config_text, make_world, today
from tests.e2e.slackbot import Bot, running_bot, serving
from tests.fakes.slack_api import Call, FakeSlack

PHASE = re.compile(
    r"^:(white_check_mark|warning): (clone|scrub|deploy|probe|register) · \d+/\d+ done"
    r"( · \d+ failed)? · \d+ (s|min|min \d+ s)( · removed 7 paths on each)?$"
)


def slow_deploy(seconds: float, fail_slot_2: bool = False) -> str:
    """A deploy that takes a while (so replies are seen in progress), failing on slot 2."""
    fail = 'case "$BYOI_SERVER" in *-2) echo "migrations failed" >&2; exit 3;; esac; '
    return repr(f"sleep {seconds}; " + (fail if fail_slot_2 else "") + DEPLOY_OK)


def config(servers: int, **keys: str) -> str:
    return config_text(
        operators='["W111"]',
        approvers='["UBOB"]',
        max_servers=str(servers),
        max_parallel="10",
        **keys,
    )


def scale(bot: Bot, servers: int) -> tuple[Call, list[Call]]:
    """Request, approve and wait for the summary; the card and its thread's posts."""
    bot.command(f"scale web {servers}")
    card = bot.fake.wait_for(lambda: bot.fake.sent("chat.postMessage"))[0]
    bot.click("run_approve", 1, "UBOB")
    bot.fake.wait_for(
        lambda: [c for c in bot.fake.sent("chat.postMessage") if c.params.get("reply_broadcast")],
        timeout=120,
    )
    thread = [c for c in bot.fake.sent("chat.postMessage") if c.params.get("thread_ts")]
    assert all(c.params["thread_ts"] == card.ts for c in thread)
    return card, thread


def final_texts(fake: FakeSlack, posts: list[Call]) -> list[str]:
    """What each reply says last: its post, or its latest edit."""
    latest = {c.ts: c.params["text"] for c in posts}
    for call in fake.sent("chat.update"):
        if call.ts in latest:
            latest[call.ts] = call.params["text"]
    return [latest[c.ts] for c in posts]


def derived(root: Path, run_id: int = 1) -> list[str]:
    """The phase lines the stored run gives now (what a restart would edit the replies to)."""
    store = Store(root / "byoi.db")
    try:
        run = store.run(run_id)
        assert run is not None and run.state.terminal
        return [phase_text(p) for p in Display(store).phases(run)]
    finally:
        store.close()


def edited(fake: FakeSlack, posts: list[Call]) -> list[str]:
    """The replies (by their first words as posted) that were edited later."""
    ts = {c.ts for c in fake.sent("chat.update")}
    return [c.params["text"].split(" · ")[0] for c in posts if c.ts in ts]


def assert_within_budget(fake: FakeSlack, phases: int, failed: int) -> None:
    posts = fake.sent("chat.postMessage")
    assert len(posts) == 2 + phases + failed  # the card, a reply per phase and failure, summary
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    # At most one post per second in the channel (less a margin for request latency jitter).
    assert min(gaps) >= 0.8, gaps
    edits: dict[str | None, list[float]] = defaultdict(list)
    for call in fake.sent("chat.update"):
        edits[call.ts].append(call.at)
    for times in edits.values():
        assert all(b - a >= 1.9 for a, b in itertools.pairwise(times)), times  # coalesced


def test_a_three_server_run_with_a_failure_tells_its_story_in_the_thread(tmp_path: Path) -> None:
    with running_bot(tmp_path, config(3, deploy_command=slow_deploy(3, fail_slot_2=True))) as bot:
        _card, thread = scale(bot, 3)
        bot.fake.wait_for(lambda: derived(tmp_path) == final_texts(bot.fake, thread[:5]))

        phases = final_texts(bot.fake, thread[:5])
        failure, summary = (c.params["text"] for c in thread[5:])
        assert all(PHASE.match(p) for p in phases), phases
        assert [p.split(" · ")[:2] for p in phases] == [
            [":white_check_mark: clone", "3/3 done"],
            [":white_check_mark: scrub", "3/3 done"],
            [":warning: deploy", "2/3 done"],
            [":white_check_mark: probe", "2/2 done"],
            [":white_check_mark: register", "2/2 done"],
        ]
        assert " · 1 failed · " in phases[2] and phases[1].endswith("removed 7 paths on each")
        assert ":arrows_counterclockwise: deploy" in thread[2].params["text"]
        assert ":arrows_counterclockwise: deploy" in edited(bot.fake, thread[:5])
        assert "failed at deploy" in failure and "migrations failed" in failure
        assert "Run 1 partially failed" in summary and thread[-1].params["reply_broadcast"]
        assert_within_budget(bot.fake, phases=5, failed=1)


def test_a_fifty_server_run_adds_a_handful_of_replies_not_one_per_server(tmp_path: Path) -> None:
    with running_bot(tmp_path, config(50, deploy_command=slow_deploy(0.5))) as bot:
        _card, thread = scale(bot, 50)
        bot.fake.wait_for(lambda: derived(tmp_path) == final_texts(bot.fake, thread[:5]))

        phases = final_texts(bot.fake, thread[:5])
        assert len(thread) == 6  # five phases and the summary
        assert all(PHASE.match(p) and " · 50/50 done · " in p for p in phases), phases
        assert "Run 1 succeeded" in thread[-1].params["text"]
        assert edited(bot.fake, thread[:5])  # posted while servers were in the step
        assert_within_budget(bot.fake, phases=5, failed=0)
        store = Store(tmp_path / "byoi.db")
        assert store.run(1).state == RunState.SUCCEEDED  # type: ignore[union-attr]
        store.close()


# a roll: one reply per batch ---------------------------------------------------------------

BATCH = re.compile(
    r"^:white_check_mark: batch [123]/3 · 1/1 new up · 1/1 old removed · \d+ (s|min|min \d+ s)$"
)


def three_behind(world: World) -> None:
    """Three servers on the old image, then a newer image in the family."""
    run = world.request("scale web 3", "W111")
    world.say(f"approve {run.id}", "UBOB")
    world.finish(run.id)
    world.provider.create_image("web-new", IMAGE_FILES, family="web", created_at=world.clock())


def test_a_roll_in_three_batches_adds_one_reply_per_batch_and_the_summary(tmp_path: Path) -> None:
    keys = config(4, deploy_command=slow_deploy(3))  # room for the surge of one
    with running_bot(tmp_path, keys, before=three_behind) as bot:
        bot.command("roll web --batch 1")
        card = bot.fake.wait_for(lambda: bot.fake.sent("chat.postMessage"))[0]
        bot.click("run_approve", 2, "UBOB")
        bot.fake.wait_for(
            lambda: [
                c for c in bot.fake.sent("chat.postMessage") if c.params.get("reply_broadcast")
            ],
            timeout=120,
        )
        thread = [c for c in bot.fake.sent("chat.postMessage") if c.params.get("thread_ts")]
        bot.fake.wait_for(lambda: derived(tmp_path, 2) == final_texts(bot.fake, thread[:3]))

        batches = final_texts(bot.fake, thread[:3])
        assert len(thread) == 4 and all(c.params["thread_ts"] == card.ts for c in thread)
        assert all(BATCH.match(b) for b in batches), batches
        assert [b.split(" · ")[0] for b in batches] == [
            f":white_check_mark: batch {n}/3" for n in (1, 2, 3)
        ]
        assert [c.params["metadata"]["event_payload"]["reply"] for c in thread] == [
            "batch:1",
            "batch:2",
            "batch:3",
            "summary",
        ]
        assert ":arrows_counterclockwise: batch 1/3" in thread[0].params["text"]  # posted early
        assert len(edited(bot.fake, thread[:3])) == 3  # and each edited to its final counts
        assert "Run 2 succeeded" in thread[-1].params["text"]
        assert_within_budget(bot.fake, phases=3, failed=0)


# killed between Slack taking a reply and byoi storing where it is ------------------------------

HELD: dict[str, Any] = {
    "phase": lambda params: bool(params.get("thread_ts")),  # the first reply: clone
    "summary": lambda params: bool(params.get("reply_broadcast")),
}


def replies_in_thread(fake: FakeSlack, card: Call) -> Counter[str]:
    """How often each of byoi's replies is in the card's thread (Slack's own record)."""
    found: Counter[str] = Counter()
    for message in fake.thread(card.params["channel"], str(card.ts)):
        assert message["metadata"]["event_type"] == EVENT_TYPE
        found[message["metadata"]["event_payload"]["reply"]] += 1
    return found


@pytest.mark.parametrize("held", sorted(HELD))
def test_a_kill_after_slack_took_a_reply_never_posts_it_twice(tmp_path: Path, held: str) -> None:
    world = make_world(
        tmp_path, config(3, deploy_command=slow_deploy(1, fail_slot_2=True)), now=today()
    )
    world.store.close()
    fake = FakeSlack().start()
    hold = fake.hold("chat.postMessage", HELD[held])
    try:
        with serving(tmp_path, fake) as bot:
            bot.command("scale web 3")
            card = fake.wait_for(lambda: fake.sent("chat.postMessage"))[0]
            bot.click("run_approve", 1, "UBOB")
            assert hold.accepted.wait(60), bot.logs()
            bot.process.kill()  # Slack has the reply; byoi never hears where it is
            bot.process.wait(10)
            hold.release.set()
        with serving(tmp_path, fake, log_name="restart.log") as bot:
            fake.wait_for(lambda: "summary" in replies_in_thread(fake, card), timeout=90)
            thread = [c for c in fake.sent("chat.postMessage") if c.params.get("thread_ts")]
            fake.wait_for(lambda: derived(tmp_path) == final_texts(fake, thread[:5]), timeout=30)
    finally:
        fake.stop()

    found = replies_in_thread(fake, card)
    assert set(found) == {f"phase:{p}" for p in PHASES} | {"failure:2", "summary"}, found
    assert set(found.values()) == {1}, found  # exactly one reply each
    assert fake.sent("conversations.replies")  # looked up, not posted again


PHASES = ("clone", "scrub", "deploy", "probe", "register")
