"""Stale-image alert cards against the fake Slack Web API, with the local provider and moto."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.slack.alertcards import AlertCards
from bot.slack.cards import Poster
from bot.slack.serve import web_client
from pipeline.services.display import Display
from pipeline.services.replies import AlertsReply, RunReply
from tests.conftest import IMAGE_FILES, START, World, config_text, make_world
from tests.fakes.slack_api import FakeSlack, text_of


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    yield server
    server.stop()


def alert_cards(world: World, fake: FakeSlack) -> AlertCards:
    return AlertCards(
        Poster(web_client("xoxb-test", fake.api_url), 0.0), Display(world.store), world.clock
    )


def drifted_world(root: Path) -> World:
    world = make_world(root, config_text(channel="C0ALERTS"))
    world.provider.create_image(
        "web-old",
        IMAGE_FILES,
        family="web",
        versions={"ruby_version": "3.1.2", "operating_system": "ubuntu2204"},
        created_at=START - timedelta(days=1),
    )
    return world


def cards(fake: FakeSlack) -> list[str]:
    return [text_of(c) for c in fake.sent("chat.postMessage") if not c.params.get("thread_ts")]


def test_a_check_posts_one_card_per_finding_and_never_a_duplicate(
    tmp_path: Path, fake: FakeSlack
) -> None:
    world = drifted_world(tmp_path)
    show = alert_cards(world, fake)

    show.show(world.service.views.scan(world.clock()).changes)
    world.clock.advance(days=1)
    show.show(world.service.views.scan(world.clock()).changes)

    posted = cards(fake)
    assert len(posted) == 2  # drift in staging and in production
    assert all("ruby_version 3.1.2 → 3.2.2" in c for c in posted)
    assert all("alert_refresh" in c and "alert_snooze" in c for c in posted)
    assert {c.params["channel"] for c in fake.sent("chat.postMessage")} == {"C0ALERTS"}
    reminders = [c for c in fake.sent("chat.postMessage") if c.params.get("thread_ts")]
    assert len(reminders) == 2 and "Still stale" in reminders[0].params["text"]


def test_snooze_silences_and_refresh_resolves(tmp_path: Path, fake: FakeSlack) -> None:
    world = drifted_world(tmp_path)
    show = alert_cards(world, fake)
    show.show(world.service.views.scan(world.clock()).changes)
    staging = next(a for a in world.store.alerts.unresolved() if a.env == "staging")

    snoozed = world.say(f"snooze {staging.id}", "UBOB", expect=AlertsReply)
    show.update(snoozed.alerts[0])
    show.show(world.service.views.scan(world.clock()).changes)

    edited = [text_of(c) for c in fake.sent("chat.update") if c.params["ts"] == staging.shown_as]
    assert any("snoozed until" in e and "alert_snooze" not in e for e in edited)
    threads = {
        c.params["thread_ts"] for c in fake.sent("chat.postMessage") if c.params.get("thread_ts")
    }
    assert staging.shown_as not in threads  # the snoozed one was not reminded

    world.scale_and_approve("scale web 1")
    world.scale_and_approve("refresh web")
    changes = world.service.views.scan(world.clock()).changes
    show.show(changes)
    (fleet,) = changes.new  # the server still runs the old image: a card with Roll
    roll_card = text_of(fake.sent("chat.postMessage")[-1])
    assert "not what the fleet runs" in roll_card and "alert_roll" in roll_card
    assert "alert_refresh" not in roll_card

    last = [text_of(c) for c in fake.sent("chat.update")][-2:]
    assert all("resolved" in t and "alert_refresh" not in t for t in last)
    assert world.store.alerts.unresolved() == [world.store.alerts.get(fleet.id)]
    world.scale_and_approve("roll web")
    show.show(world.service.views.scan(world.clock()).changes)
    assert world.store.alerts.unresolved() == []
    assert world.say("scale web 2 --dry-run", expect=RunReply).plan.image.name.startswith(
        "web-staging-"
    )


def test_a_check_on_aws_posts_cards_for_a_drifted_ami(
    aws: str, tmp_path: Path, fake: FakeSlack
) -> None:
    from tests.integration.moto_env import seed_ami
    from tests.integration.test_aws_runs import aws_world

    world = aws_world(tmp_path, channel="C0AWS")
    seed_ami("web-base-v2", "web", {"ruby_version": "2.7.0", "operating_system": "ubuntu2204"})
    show = alert_cards(world, fake)

    show.show(world.service.views.scan(world.clock()).changes)
    show.show(world.service.views.scan(world.clock()).changes)

    (card,) = cards(fake)
    assert fake.sent("chat.postMessage")[0].params["channel"] == "C0AWS"

    assert "web-base-v2" in card and "ruby_version 2.7.0 → 3.2.2" in card
