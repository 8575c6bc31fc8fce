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


@pytest.mark.parametrize(
    ("setting", "auth"),
    [
        ("http://proxy.internal:3128", None),
        ("proxy.internal:3128", None),  # as the Slack SDK takes it: http
        ("http://user:pw@proxy.internal:3128", "Basic dXNlcjpwdw=="),
        ("http://us%40er:p%3Aw@proxy.internal:3128", "Basic dXNAZXI6cDp3"),  # us@er:p:w
    ],
)
def test_a_proxy_in_the_environment_is_used_as_the_sdk_would(
    monkeypatch: pytest.MonkeyPatch, setting: str, auth: str | None
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", setting)
    connections = respond.pool()
    assert isinstance(connections, urllib3.ProxyManager)
    assert connections.proxy is not None
    assert (connections.proxy.scheme, connections.proxy.host) == ("http", "proxy.internal")
    assert connections.proxy.auth is None  # the password goes in a header, not the URL
    assert connections.proxy_headers.get("proxy-authorization") == auth


def test_a_proxy_byoi_cannot_use_is_said_once_and_replies_go_direct(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:secret@proxy.internal:1080")
    connections = respond.pool()
    assert not isinstance(connections, urllib3.ProxyManager)
    (line,) = [r.message for r in caplog.records if "without a proxy" in r.message]
    assert "proxy.internal:1080" in line and "secret" not in line


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
    empty = BoltContext({"response_url": ""})  # a payload with an empty one: fails in one line
    step(empty, lambda: BoltResponse(status=200))
    assert isinstance(empty.respond, respond.PooledRespond)
    assert empty.respond(text="x").status_code == 0


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


class _Dropping(_Recording):
    """Answers the first request on a connection, then closes it without answering the next
    (a kept connection the server dropped just as the reply was sent)."""

    seen: ClassVar[list[tuple[int, str]]] = []
    answered: ClassVar[set[int]] = set()

    def do_POST(self) -> None:
        port = self.client_address[1]
        if port in self.answered:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.close_connection = True
            return
        self.answered.add(port)
        super().do_POST()


class _Slow(_Recording):
    seen: ClassVar[list[tuple[int, str]]] = []

    def do_POST(self) -> None:
        time.sleep(1.0)
        super().do_POST()


def test_a_kept_connection_dropped_unanswered_is_replaced_once_and_the_reply_arrives() -> None:
    with _serving(_Dropping) as url:
        reply = respond.PooledRespond(url, respond.pool())
        assert reply(text="first").status_code == 200
        assert reply(text="second").status_code == 200
    assert [text for _, text in _Dropping.seen] == ["first", "second"]


def test_a_reply_that_cannot_be_delivered_is_one_log_line_and_no_second_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slow = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=0.3), retries=False)
    with _serving(_Slow) as url:
        answer = respond.PooledRespond(url, slow)(text="status")
    assert answer.status_code == 0
    closed = respond.PooledRespond("http://127.0.0.1:9/respond/x", respond.pool())
    assert closed(text="help").status_code == 0
    lost = [r for r in caplog.records if "could not deliver a reply" in r.message]
    assert len(lost) == 2 and all(r.exc_info is None for r in lost)
    assert "ReadTimeoutError" in lost[0].message
    time.sleep(1.0)  # the slow server finishes reading the one reply it was sent
    assert [text for _, text in _Slow.seen] == ["status"]


def test_a_refused_reply_is_logged(slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    slack.fail("respond", 404)
    answer = respond.PooledRespond(slack.response_url, respond.pool())(text="late")
    assert answer.status_code == 404
    assert any("Slack refused a reply (HTTP 404" in r.message for r in caplog.records)
