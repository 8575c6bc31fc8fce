"""Junk over HTTP and Socket Mode: refused with 401 or 400 (never 500), and /healthz stays up."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from slack_sdk.signature import SignatureVerifier

from tests.e2e.slackbot import SECRET, Bot, click_body, running_bot, slash_body

FORM = "application/x-www-form-urlencoded"


def send(bot: Bot, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{bot.url}/slack/events", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def signed(body: str, timestamp: str | None = None, content_type: str = FORM) -> dict[str, str]:
    ts = timestamp if timestamp is not None else str(int(time.time()))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body),
    }


def payload(**changes: object) -> str:
    """A real click (bolt-python's fixture) with fields replaced, or removed when None."""
    body = json.loads(dict(parse_qsl(click_body("run_approve", 1, "UBOB", "x")))["payload"])
    body.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del body[key]
    return urlencode({"payload": json.dumps(body)})


UNSIGNED = {
    "no headers": (b"payload=%7Bnot-json", {"Content-Type": FORM}),
    "empty timestamp": (
        b"payload=%7Bnot-json",
        {"Content-Type": FORM, "X-Slack-Request-Timestamp": "", "X-Slack-Signature": "v0=00"},
    ),
    "text timestamp": (
        b"payload=%7Bnot-json",
        {"Content-Type": FORM, "X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=0"},
    ),
    "huge timestamp": (
        b"command=%2Fbyoi",
        {"Content-Type": FORM, "X-Slack-Request-Timestamp": "9" * 400, "X-Slack-Signature": "x"},
    ),
    "wrong secret": (b"text=x", {**signed("text=y"), "Content-Type": FORM}),
    "binary body": (bytes(range(256)), {"Content-Type": FORM, "X-Slack-Signature": "v0=1"}),
}


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Bot:
    root: Path = tmp_path_factory.mktemp("hostile")
    with running_bot(root) as running:
        yield running  # type: ignore[misc]


@pytest.mark.parametrize("case", sorted(UNSIGNED))
def test_unsigned_or_badly_signed_requests_get_401_before_parsing(bot: Bot, case: str) -> None:
    body, headers = UNSIGNED[case]

    status, _ = send(bot, body, headers)

    assert status == 401


def signed_junk() -> dict[str, tuple[str, str]]:
    return {
        "payload not json": ("payload=%7Bnot-json", FORM),
        "payload a list": ("payload=%5B1%2C2%5D", FORM),
        "json not an object": ("[1, 2]", "application/json"),
        "json broken": ('{"type": "event_callback", ', "application/json"),
        "empty body": ("", FORM),
        "form junk": ("%%%&&&===", FORM),
        "no actions": (payload(actions=[]), FORM),
        "actions not a list": (payload(actions="approve"), FORM),
        "action not a map": (payload(actions=["approve"]), FORM),
        "unknown type": (payload(type="teleport"), FORM),
        "event without event": ('{"type": "event_callback"}', "application/json"),
    }


@pytest.mark.parametrize("case", sorted(signed_junk()))
def test_signed_junk_gets_400_never_500(bot: Bot, case: str) -> None:
    body, content_type = signed_junk()[case]

    status, _ = send(bot, body.encode(), signed(body, content_type=content_type))

    assert status in (200, 400), status
    with urllib.request.urlopen(f"{bot.url}/healthz", timeout=5) as response:
        assert response.status == 200


def test_a_click_without_a_user_is_told_clearly(bot: Bot) -> None:
    body = payload(user=None, response_url=bot.fake.response_url)

    status, _ = send(bot, body.encode(), signed(body))

    assert status == 200
    said = bot.fake.wait_for(
        lambda: [c for c in bot.fake.sent("respond") if "who" in c.params["text"]]
    )
    assert "Something went wrong" not in said[0].params["text"]


def test_a_command_without_a_user_id_is_told_clearly(bot: Bot) -> None:
    fields = slash_body("status", "W111", "C111", bot.fake.response_url)
    body = "&".join(p for p in fields.split("&") if not p.startswith("user_id="))

    status, answer = send(bot, body.encode(), signed(body))

    assert status == 200
    assert "who" in json.loads(answer)["text"]


def test_nothing_in_the_log_is_a_traceback(bot: Bot) -> None:
    for case in sorted(signed_junk()):
        body, content_type = signed_junk()[case]
        send(bot, body.encode(), signed(body, content_type=content_type))
    for body, headers in UNSIGNED.values():
        send(bot, body, headers)

    assert "Traceback" not in bot.logs()
    with urllib.request.urlopen(f"{bot.url}/healthz", timeout=5) as response:
        assert json.loads(response.read()) == {"ok": True}


def test_socket_mode_junk_is_acked_or_dropped_and_byoi_keeps_answering(tmp_path: Path) -> None:
    import queue
    import threading

    from websockets.sync.server import ServerConnection, serve

    from tests.e2e.test_slack_socket_mode import click_envelope, slash_envelope
    from tests.fakes.slack_api import FakeSlack

    outgoing: queue.Queue[str] = queue.Queue()
    acks: list[dict[str, object]] = []

    def handler(connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "hello", "num_connections": 1}))
        while True:
            with contextlib.suppress(queue.Empty):
                connection.send(outgoing.get_nowait())
            try:
                acks.append(json.loads(connection.recv(timeout=0.05)))
            except TimeoutError:
                continue
            except Exception:
                return

    def envelope(envelope_id: str, kind: str, body: object) -> str:
        return json.dumps({"envelope_id": envelope_id, "type": kind, "payload": body})

    with serve(handler, "127.0.0.1", 0) as server:
        port = server.socket.getsockname()[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        fake = FakeSlack(socket_url=f"ws://127.0.0.1:{port}/link")
        env = {"SLACK_APP_TOKEN": "xapp-1-test", "SLACK_SIGNING_SECRET": ""}
        with running_bot(tmp_path, env=env, fake=fake) as bot:
            fake.wait_for(lambda: fake.sent("apps.connections.open"))
            click = json.loads(click_envelope("x", 1, "UBOB", fake.response_url))["payload"]
            no_user = {k: v for k, v in click.items() if k != "user"}
            slash = json.loads(slash_envelope("x", "status", "W111", fake.response_url))
            no_user_id = {k: v for k, v in slash["payload"].items() if k != "user_id"}
            junk = [
                "{not json",
                json.dumps([1, 2]),
                envelope("j1", "interactive", "a string"),
                envelope("j2", "interactive", {**click, "actions": []}),
                envelope("j3", "interactive", {**click, "actions": "approve"}),
                envelope("j4", "interactive", {**click, "user": "UBOB"}),
                envelope("j5", "interactive", no_user),
                envelope("j6", "slash_commands", no_user_id),
                envelope("j7", "events_api", {"type": "event_callback", "event": "x"}),
                envelope("j8", "teleport", {}),
            ]
            for message in junk:
                outgoing.put(message)
            outgoing.put(slash_envelope("ok", "scale web 1", "W111", fake.response_url))
            card = fake.wait_for(lambda: fake.sent("chat.postMessage"), timeout=20)
            told = fake.wait_for(
                lambda: [c for c in fake.sent("respond") if "who sent this" in c.params["text"]]
            )
            log = bot.logs()
        server.shutdown()

    assert "Run 1" in json.dumps(card[0].params)
    acked = {str(a.get("envelope_id")) for a in acks}
    assert {"j2", "j3", "j4", "j5", "j6", "ok"} <= acked
    no_user_ack = next(a for a in acks if a.get("envelope_id") == "j6")
    assert "who sent this" in json.dumps(no_user_ack)
    assert told
    assert "Something went wrong" not in json.dumps([c.params for c in fake.sent("respond")])
    assert "Failed to run a middleware" not in log and "internal error" not in log
    # The only trace is slack_sdk's own, for the frame that is not JSON at all.
    assert log.count("Traceback") == log.count("Failed to process a message") == 1, log
