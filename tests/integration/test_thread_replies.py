"""A run's thread replies against the fake Slack Web API when byoi loses a post's answer: Slack
took the post, byoi never stored where the reply is. The reply is found again by its metadata
and adopted, never posted twice; without the scope to read threads byoi posts it again, and
says so once."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from bot.slack.cardpost import CARD
from bot.slack.cards import Cards, Poster
from bot.slack.poster import ChannelBusy
from bot.slack.serve import web_client
from bot.slack.thread import EVENT_TYPE, ThreadReplies
from pipeline.domain.models import Run, RunState
from pipeline.services.display import Display
from tests.conftest import World, config_text, make_world
from tests.fakes.slack_api import FakeSlack
from tests.integration.test_cards import requested
from tests.unit.test_runs import FAIL_ON_SLOT_2

REPLIES = {
    "phase:clone",
    "phase:scrub",
    "phase:deploy",
    "phase:probe",
    "phase:register",
    "failure:2",
    "summary",
}


class LosingPoster(Poster):
    """Posts, then loses Slack's answer for the replies named in ``lose`` (once each), as a
    crash or a dropped connection right after Slack took the post would."""

    def __init__(self, fake: FakeSlack, lose: set[str]) -> None:
        super().__init__(web_client("xoxb-test", fake.api_url), interval=0.0)
        self.lose = set(lose)

    def _send(self, channel: str, kwargs: dict[str, object]) -> dict[str, object]:
        response = super()._send(channel, kwargs)
        metadata = kwargs.get("metadata")
        payload = metadata["event_payload"] if isinstance(metadata, dict) else {}
        what = payload.get("reply") or (CARD if "install" in payload else None)
        if what in self.lose:
            self.lose.discard(what)
            raise ConnectionResetError(f"lost the answer to the post of {what}")
        return response


@pytest.fixture
def fake() -> FakeSlack:
    server = FakeSlack().start()
    yield server  # type: ignore[misc]
    server.stop()


def show_run(world: World, fake: FakeSlack, poster: Poster) -> Run:
    """A 3-server run with a failure, shown from request to end by cards using ``poster``."""
    cards = Cards(
        poster.client,
        Display(world.store),
        world.clock,
        lambda run: run.channel,
        interval=0.2,
        poster=poster,
    )
    cards.start()
    run = requested(world, "scale web 3")
    cards.run_changed(run)
    fake.wait_for(lambda: fake.sent("chat.postMessage"))
    world.say(f"approve {run.id}", "UBOB")
    final = world.finish(run.id)
    cards.run_changed(final)
    fake.wait_for(lambda: Display(world.store).runs_behind() == [], timeout=30)
    cards.stop()
    shown = world.stored(run.id)
    assert shown.state == RunState.PARTIALLY_FAILED and shown.shown_as
    return shown


def replies_in_thread(fake: FakeSlack, run: Run) -> Counter[str]:
    """How often each of byoi's replies is in the run's thread, by its metadata."""
    assert run.channel and run.shown_as
    found: Counter[str] = Counter()
    for message in fake.thread(run.channel, run.shown_as):
        metadata = message.get("metadata") or {}
        assert metadata.get("event_type") == EVENT_TYPE
        assert metadata["event_payload"]["run"] == run.id
        found[metadata["event_payload"]["reply"]] += 1
    return found


def test_a_reply_whose_answer_was_lost_is_found_in_the_thread_and_not_posted_again(
    tmp_path: Path, fake: FakeSlack
) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_2))

    run = show_run(world, fake, LosingPoster(fake, {"phase:deploy", "summary"}))

    assert replies_in_thread(fake, run) == dict.fromkeys(REPLIES, 1)
    lookups = fake.sent("conversations.replies")
    assert lookups and all(c.params["include_all_metadata"] in ("1", "true") for c in lookups)
    stored = Display(world.store).thread_replies(run.id)
    assert set(stored) == REPLIES | {CARD}  # the card's post is recorded beside its replies
    assert all(r.posted and r.shown_as for r in stored.values())
    # The adopted phase reply is still edited in place: its stored ts is the one in the thread.
    posts = fake.sent("chat.postMessage")
    deploy = next(c for c in posts if ":warning: deploy" in c.params["text"])
    assert stored["phase:deploy"].shown_as == deploy.ts


def test_a_card_whose_answer_was_lost_is_found_in_the_channel_and_not_posted_again(
    tmp_path: Path, fake: FakeSlack
) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_2))

    run = show_run(world, fake, LosingPoster(fake, {CARD}))

    cards = [c for c in fake.sent("chat.postMessage") if not c.params.get("thread_ts")]
    assert len(cards) == 1 and run.shown_as == cards[0].ts
    assert fake.sent("conversations.history")
    assert replies_in_thread(fake, run) == dict.fromkeys(REPLIES, 1)


def test_without_the_scope_to_read_threads_byoi_posts_again_and_says_so_once(
    tmp_path: Path, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_2))
    fake.scopes_missing.add("conversations.replies")

    with caplog.at_level(logging.WARNING, logger="bot.slack.thread"):
        run = show_run(world, fake, LosingPoster(fake, {"phase:clone", "summary"}))

    posted = replies_in_thread(fake, run)
    assert set(posted) == REPLIES
    assert posted["phase:clone"] == posted["summary"] == 2  # the price of the missing scope
    assert sum(posted.values()) == len(REPLIES) + 2
    warnings = [r for r in caplog.records if "cannot read run threads" in r.getMessage()]
    assert len(warnings) == 1 and "channels:history" in warnings[0].getMessage()
    assert len(fake.sent("conversations.replies")) == 1


def test_conversations_replies_pages_a_long_thread_like_slack(fake: FakeSlack) -> None:
    client = web_client("xoxb-test", fake.api_url)
    parent = client.chat_postMessage(channel="C1", text="card")["ts"]
    for n in range(5):
        client.chat_postMessage(
            channel="C1",
            text=f"reply {n}",
            thread_ts=parent,
            metadata={"event_type": EVENT_TYPE, "event_payload": {"run": 1, "reply": f"r{n}"}},
        )

    first = client.conversations_replies(channel="C1", ts=parent, limit=4)
    cursor = first["response_metadata"]["next_cursor"]
    rest = client.conversations_replies(
        channel="C1", ts=parent, limit=4, cursor=cursor, include_all_metadata=True
    )

    assert [m["text"] for m in first["messages"]] == ["card", "reply 0", "reply 1", "reply 2"]
    assert first["has_more"] and all("metadata" not in m for m in first["messages"])
    assert [m["metadata"]["event_payload"]["reply"] for m in rest["messages"]] == ["r3", "r4"]
    assert not rest["has_more"] and rest["response_metadata"]["next_cursor"] == ""


def test_a_busy_channel_records_no_reply_and_once_free_the_reply_is_posted_once(
    tmp_path: Path, fake: FakeSlack
) -> None:
    world = make_world(tmp_path)
    display = Display(world.store)
    request = requested(world, "scale web 1")
    world.say(f"approve {request.id}", "UBOB")
    world.finish(request.id)
    poster = Poster(web_client("xoxb-test", fake.api_url), interval=1.0)
    card = str(poster.now("C1", text="the run's card")["ts"])  # the channel's turn is taken
    display.run_shown(request.id, "C1", card)
    run = world.stored(request.id)
    first = display.phases(run)[:1]
    replies = ThreadReplies(poster.client, poster.now, display, world.clock, wait=poster.wait)

    with pytest.raises(ChannelBusy):
        replies.show(run, first, tail=False)

    assert display.thread_replies(run.id) == {}  # not even intended: nothing to look up later
    assert fake.thread("C1", card) == []
    fake.wait_for(lambda: poster.wait("C1") == 0, timeout=10)
    replies.show(run, first, tail=False)
    replies.show(run, first, tail=False)  # posted and unchanged: nothing more to do

    assert replies_in_thread(fake, run) == {first[0].key: 1}
    stored = display.thread_replies(run.id)[first[0].key]
    assert stored.posted and stored.shown_as == fake.thread("C1", card)[0]["ts"]
    assert fake.sent("conversations.replies") == []
