"""A run's thread over HTTP: one reply per step phase, edited to its final counts and durations,
a reply per failed server and the summary, within Slack's budgets (posts per second per channel,
edits per message)."""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from pathlib import Path

from bot.slack.thread import phase_text
from pipeline.domain.models import RunState
from pipeline.services.display import Display
from pipeline.state.store import Store
from tests.conftest import DEPLOY_OK, config_text
from tests.e2e.slackbot import Bot, running_bot
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


def derived(root: Path) -> list[str]:
    """The phase lines the stored run gives now (what a restart would edit the replies to)."""
    store = Store(root / "byoi.db")
    try:
        run = store.run(1)
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
