"""Replies to response_url: Bolt's message, over one kept-alive connection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import urllib3
from slack_bolt import BoltContext, BoltResponse

from bot.slack import respond
from tests.fakes.slack_api import FakeSlack


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def test_replies_carry_bolts_message_and_share_one_connection(slack: FakeSlack) -> None:
    connections = respond.pool()
    reply = respond.PooledRespond(slack.response_url, connections)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    for n in range(3):
        answer = reply(text=f"reply {n}", blocks=blocks, response_type="ephemeral")
        assert answer.status_code == 200
    reply(text="last", replace_original=False)
    sent = [c.params for c in slack.calls if c.method == "respond"]
    assert sent[:3] == [
        {"text": f"reply {n}", "blocks": blocks, "response_type": "ephemeral"} for n in range(3)
    ]
    assert sent[3] == {"text": "last", "replace_original": False}
    host = connections.connection_from_url(slack.response_url)
    assert host.num_connections == 1  # kept alive: every reply after the first reused it


def test_without_a_response_url_it_refuses_as_bolt_does() -> None:
    with pytest.raises(ValueError, match="no response_url"):
        respond.PooledRespond(None, respond.pool())(text="x")


def test_a_proxy_in_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    connections = respond.pool()
    assert isinstance(connections, urllib3.ProxyManager)
    assert connections.proxy is not None and connections.proxy.host == "proxy.internal"


def test_the_middleware_hands_listeners_the_pooled_respond(slack: FakeSlack) -> None:
    connections = respond.pool()
    step = respond.middleware(connections)
    context = BoltContext({"response_url": slack.response_url})
    assert step(context, lambda: BoltResponse(status=200)).status == 200
    assert isinstance(context.respond, respond.PooledRespond)
    assert context.respond.connections is connections
    bare = BoltContext({})  # an event: nothing to reply to
    step(bare, lambda: BoltResponse(status=200))
    assert "respond" not in bare
