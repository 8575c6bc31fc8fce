"""Replies to response_url: Bolt's message, over one kept-alive connection."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

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


def test_replies_carry_bolts_message(slack: FakeSlack) -> None:
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


class _Recording(BaseHTTPRequestHandler):
    """Answers 200, keeping the connection open (HTTP/1.1); records each body and the
    client's port (one port: one connection)."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[int, str]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.client_address[1], body["text"]))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


class _Closing(_Recording):
    """The same, closing a connection idle 0.2 s (a short keep-alive on the server's side)."""

    timeout = 0.2
    seen: ClassVar[list[tuple[int, str]]] = []


@contextmanager
def _serving(handler: type[_Recording]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/respond/T1/1/abc"
    finally:
        server.shutdown()
        server.server_close()


def test_replies_share_one_kept_alive_connection() -> None:
    with _serving(_Recording) as url:
        reply = respond.PooledRespond(url, respond.pool())
        for n in range(3):
            assert reply(text=f"reply {n}").status_code == 200
    assert [text for _, text in _Recording.seen] == ["reply 0", "reply 1", "reply 2"]
    assert len({port for port, _ in _Recording.seen}) == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed() -> None:
    with _serving(_Closing) as url:
        reply = respond.PooledRespond(url, respond.pool())
        assert reply(text="first").status_code == 200
        time.sleep(0.6)  # the server has closed the kept connection meanwhile
        assert reply(text="second").status_code == 200
    assert [text for _, text in _Closing.seen] == ["first", "second"]
    assert len({port for port, _ in _Closing.seen}) == 2  # a new connection, each sent once
