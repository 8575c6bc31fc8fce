"""Run cards against the fake Slack Web API: posted once, edited in place, expired cards closed."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.slack.cards import Cards
from bot.slack.serve import web_client
from pipeline.config.model import ThreadUpdates
from pipeline.domain.models import Run, RunState
from pipeline.services.caller import Caller
from pipeline.services.display import Display
from pipeline.services.replies import RunReply
from tests.conftest import World, config_text, make_world
from tests.fakes.slack_api import FakeSlack, text_of
from tests.unit.test_runs import FAIL_ON_SLOT_2


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    yield server
    server.stop()


def requested(world: World, text: str) -> Run:
    """A run requested in channel C1, as a slash command there does."""
    reply = world.service.handle(text, Caller("UALICE", channel="C1"), world.clock())
    assert isinstance(reply, RunReply) and reply.run is not None, reply
    return reply.run


def rejected(world: World, run: Run) -> Run:
    """``run``, waiting for approval, rejected by UBOB: as stored now."""
    world.store.transition(
        run.id,
        [RunState.AWAITING_APPROVAL],
        RunState.REJECTED,
        world.clock(),
        actor="UBOB",
        reason="rejected by UBOB",
    )
    return world.stored(run.id)


def cards_for(
    world: World,
    fake: FakeSlack,
    interval: float = 0.3,
    channel_of: Callable[[Run], str | None] = lambda run: run.channel,
) -> Cards:
    cards = Cards(
        web_client("xoxb-test", fake.api_url),
        Display(world.store),
        world.clock,
        channel_of,
        interval=interval,
        post_interval=0.0,
    )
    cards.start()
    return cards


def test_an_expired_card_is_edited_to_say_so_and_loses_its_buttons(
    world: World, fake: FakeSlack
) -> None:
    cards = cards_for(world, fake)
    run = requested(world, "scale web 2")
    cards.run_changed(run)
    fake.wait_for(lambda: fake.sent("chat.postMessage"))
    world.clock.advance(minutes=31)

    for expired in world.service.expire_due(world.clock()):
        cards.run_changed(expired)
    cards.stop()

    (posted,) = fake.sent("chat.postMessage")
    assert "run_approve" in text_of(posted)
    last = fake.sent("chat.update")[-1]
    assert "expired" in text_of(last) and "run_approve" not in text_of(last)
    assert world.stored(run.id).state == RunState.EXPIRED


def test_bursts_of_changes_become_few_edits_and_the_last_state_lands(
    world: World, fake: FakeSlack
) -> None:
    cards = cards_for(world, fake, interval=0.5)
    run = requested(world, "scale web 1")
    cards.run_changed(run)
    fake.wait_for(lambda: fake.sent("chat.postMessage"))
    for _ in range(50):
        cards.run_changed(world.stored(run.id))

    cards.run_changed(rejected(world, run))
    cards.stop()  # shows what is pending, whatever the interval

    updates = fake.sent("chat.update")
    assert 1 <= len(updates) <= 2
    assert "rejected" in text_of(updates[-1])
    assert len(fake.sent("chat.postMessage")) == 1


def test_a_run_that_changes_while_its_card_is_posted_gets_the_card_edited_to_it(
    world: World, fake: FakeSlack
) -> None:
    cards = cards_for(world, fake, interval=0.2)
    run = requested(world, "scale web 1")
    hold = fake.hold("chat.postMessage", lambda params: not params.get("thread_ts"))
    cards.run_changed(run)
    assert hold.accepted.wait(10)
    # Rejected while Slack takes the card that still offers the buttons.
    cards.run_changed(rejected(world, run))
    hold.release.set()
    fake.wait_for(lambda: fake.sent("chat.update"))
    cards.stop()

    (card,) = [m for m in fake.messages.values() if not m.get("thread_ts")]
    shown = str(card.get("text")) + json.dumps(card.get("blocks"))
    assert "rejected" in shown and "run_approve" not in shown, shown


def test_a_restarted_byoi_does_not_repeat_thread_replies(tmp_path: object, fake: FakeSlack) -> None:
    from pathlib import Path

    from tests.conftest import config_text, make_world
    from tests.unit.test_runs import FAIL_ON_SLOT_2

    world = make_world(Path(str(tmp_path)), config_text(deploy_command=FAIL_ON_SLOT_2))
    first = cards_for(world, fake)
    run = requested(world, "scale web 2")
    first.run_changed(run)
    world.say(f"approve {run.id}", "UBOB")
    final = world.finish(run.id)
    first.run_changed(final)
    first.stop()
    replies = [c for c in fake.sent("chat.postMessage") if c.params.get("thread_ts")]

    second = cards_for(world, fake)  # as after a restart: the same run is shown again
    second.run_changed(final)
    second.stop()

    assert final.state == RunState.PARTIALLY_FAILED
    assert len(replies) == 7  # five phases, the failure and the summary
    assert [c for c in fake.sent("chat.postMessage") if c.params.get("thread_ts")] == replies


def thread(fake: FakeSlack) -> list[str]:
    return [c.params["text"] for c in fake.sent("chat.postMessage") if c.params.get("thread_ts")]


def test_a_restart_edits_phase_replies_to_their_final_state_and_posts_none_twice(
    tmp_path: Path, fake: FakeSlack
) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_2))
    paused, carry_on = threading.Event(), threading.Event()
    started: list[str] = []

    def pause_at_deploy(point: str) -> None:
        if point.startswith("deploy_started"):
            started.append(point)
            if len(started) == 2:  # both servers' deploys are stored as started
                paused.set()
                carry_on.wait(30)

    world.runner.checkpoint = pause_at_deploy
    first = cards_for(world, fake)
    run = world.service.handle("scale web 2", Caller("UALICE", channel="C1"), world.clock()).run  # type: ignore[attr-defined]
    world.say(f"approve {run.id}", "UBOB")
    assert paused.wait(timeout=30)
    first.run_changed(world.store.run(run.id))  # type: ignore[arg-type]
    first.stop()  # byoi stops here: nothing of it is left in memory
    before = thread(fake)

    carry_on.set()
    final = world.finish(run.id)
    second = cards_for(world, fake)
    second.run_changed(final)
    second.stop()

    assert before == [
        ":white_check_mark: clone · 2/2 done · 0 s",
        ":white_check_mark: scrub · 2/2 done · 0 s · removed 7 paths on each",
        ":arrows_counterclockwise: deploy · 0/2 done · 2 in progress",
    ]
    after = thread(fake)
    assert after[:3] == before and len(after) == 7
    assert after[3] == ":white_check_mark: probe · 1/1 done · 0 s"
    assert after[4] == ":white_check_mark: register · 1/1 done · 0 s"
    assert "failed at deploy" in after[5] and "partially failed" in after[6]
    (deploy_edit,) = fake.sent("chat.update")[-1:]
    assert deploy_edit.params["text"] == ":warning: deploy · 1/2 done · 1 failed · 0 s"
    shown = Display(world.store).thread_replies(run.id)
    assert deploy_edit.params["ts"] == shown["phase:deploy"].shown_as
    assert shown["phase:deploy"].text == deploy_edit.params["text"]


def test_thread_updates_failures_keeps_the_thread_to_failures_and_the_summary(
    tmp_path: Path, fake: FakeSlack
) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_2))
    run = world.scale_and_approve("scale web 2")
    cards = Cards(
        web_client("xoxb-test", fake.api_url),
        Display(world.store),
        world.clock,
        lambda run: "C1",
        post_interval=0.0,
        thread_updates_of=lambda run: ThreadUpdates.FAILURES,
    )

    cards.run_changed(world.store.run(run.id))  # type: ignore[arg-type]
    cards.stop()

    failure, summary = thread(fake)
    assert "failed at deploy" in failure and "partially failed" in summary


def test_a_run_that_ends_before_its_card_is_shown_still_gets_its_summary(
    world: World, fake: FakeSlack
) -> None:
    run = world.scale_and_approve("scale web 1")  # finished before any card exists
    cards = cards_for(world, fake, channel_of=lambda run: "C1")

    cards.run_changed(world.stored(run.id))
    cards.stop()

    (card, *phases, summary) = fake.sent("chat.postMessage")
    assert "succeeded" in text_of(card)
    assert [p.params["text"].split(" · ")[0] for p in phases] == [
        ":white_check_mark: clone",
        ":white_check_mark: scrub",
        ":white_check_mark: deploy",
        ":white_check_mark: probe",
        ":white_check_mark: register",
    ]
    assert summary.params["reply_broadcast"] is True
    stored = world.store.run(run.id)
    assert stored is not None and summary.params["thread_ts"] == stored.shown_as


def test_a_refresh_that_published_offers_to_roll_the_fleet_in_its_summary(
    world: World, fake: FakeSlack
) -> None:
    world.scale_and_approve("scale web 2")
    cards = cards_for(world, fake)
    run = requested(world, "refresh web")
    world.say(f"approve {run.id}", "UBOB")
    finished = world.finish(run.id)
    cards.run_changed(finished)

    summary = fake.wait_for(
        lambda: [c for c in fake.sent("chat.postMessage") if c.params.get("reply_broadcast")]
    )
    cards.stop()

    text = text_of(summary[0])
    assert "published into family web; measured versions match" in text
    assert "roll_offer" in text and "Roll 2 servers onto it" in text


FAIL_ODD_SLOTS = repr(
    'sleep 1; case "$BYOI_SERVER" in *[13579]) echo "migrations failed" >&2; exit 3;; esac; '
    'mkdir -p current && echo "$BYOI_RELEASE" > current/VERSION'
)


def test_a_backlog_of_thread_replies_does_not_hold_up_the_cards_final_state(
    tmp_path: Path, fake: FakeSlack
) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ODD_SLOTS))
    cards = Cards(
        web_client("xoxb-test", fake.api_url),
        Display(world.store),
        world.clock,
        lambda run: run.channel,
        interval=0.3,
        post_interval=1.0,  # Slack's one post a second per channel: the replies queue up
    )
    cards.start()
    run = requested(world, "scale web 6")
    cards.run_changed(run)
    fake.wait_for(lambda: fake.sent("chat.postMessage"))
    ended = threading.Event()

    def notify() -> None:  # as the runner tells the cards of every change in `byoi serve`
        while not ended.wait(0.2):
            cards.run_changed(world.stored(run.id))

    notifier = threading.Thread(target=notify)
    notifier.start()
    world.say(f"approve {run.id}", "UBOB")
    final = world.finish(run.id)
    ended.set()
    notifier.join()
    cards.run_changed(final)
    fake.wait_for(
        lambda: any(c.params.get("reply_broadcast") for c in fake.sent("chat.postMessage")),
        timeout=60,
    )
    cards.stop()

    card_ts = fake.sent("chat.postMessage")[0].ts
    card_edits = [c for c in fake.sent("chat.update") if c.params.get("ts") == card_ts]
    final_edit = next(c for c in card_edits if "partially failed" in text_of(c))
    replies = [c for c in fake.sent("chat.postMessage") if c.params.get("thread_ts")]
    assert final.state == RunState.PARTIALLY_FAILED
    assert len(replies) >= 5  # phases, three failures, the summary: a backlog at one a second
    assert final_edit.at < replies[-1].at, [text_of(c)[:60] for c in card_edits]
