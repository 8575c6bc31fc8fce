"""Finding a run's card in its channel after a crash: by run and installation, newest first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from bot.slack import cardpost
from tests.fakes.slack_api import FakeSlack


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def post(client: WebClient, run: int, install: str, **extra: object) -> str:
    answer = client.chat_postMessage(
        channel="C1", text=f"run {run}", metadata=cardpost.metadata(run, install), **extra
    )
    return str(answer["ts"])


def test_the_card_of_this_run_and_installation_is_found_past_other_messages(
    slack: FakeSlack,
) -> None:
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    mine = post(client, 7, "install-a")
    post(client, 7, "install-b")  # another installation's run 7 in the same channel
    post(client, 7, "install-a", thread_ts=mine)  # a reply carrying the same metadata
    for n in range(450):  # newer chatter: three pages of 200
        client.chat_postMessage(channel="C1", text=f"chatter {n}")

    finder = cardpost.CardFinder(client)

    assert finder.find("C1", 7, "install-a") == mine
    assert finder.find("C1", 8, "install-a") is None
    assert len(slack.sent("conversations.history")) >= 3 + 3  # paged through, twice


def test_without_the_history_scope_it_says_so_once_and_finds_nothing(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    post(client, 7, "install-a")
    slack.scopes_missing.add("conversations.history")
    finder = cardpost.CardFinder(client)

    assert finder.find("C1", 7, "install-a") is None
    assert finder.find("C1", 7, "install-a") is None

    warnings = [r for r in caplog.records if "cannot read channel history" in r.message]
    assert len(warnings) == 1
    assert len(slack.sent("conversations.history", ok_only=False)) == 1


def test_a_channel_byoi_is_not_in_is_skipped_without_giving_up_on_the_others(
    slack: FakeSlack,
) -> None:
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    mine = post(client, 7, "install-a")
    slack.outside.add("C2")  # a public channel posted in through chat:write.public
    finder = cardpost.CardFinder(client)

    assert finder.find("C2", 7, "install-a") is None
    assert finder.find("C1", 7, "install-a") == mine
