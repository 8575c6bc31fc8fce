"""Socket Mode: apps.connections.open hands out a local WebSocket that the test serves."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl

from websockets.sync.server import ServerConnection, serve

from tests.e2e.slackbot import PAYLOADS, running_bot
from tests.fakes.slack_api import FakeSlack, text_of


def slash_envelope(envelope_id: str, text: str, user: str, response_url: str) -> str:
    fields = dict(parse_qsl((PAYLOADS / "slash_command.bolt_python.form.txt").read_text()))
    fields.update(
        command="/byoi", text=text, user_id=user, channel_id="C111", response_url=response_url
    )
    return json.dumps(
        {
            "envelope_id": envelope_id,
            "type": "slash_commands",
            "accepts_response_payload": True,
            "payload": fields,
        }
    )


def click_envelope(envelope_id: str, run_id: int, user: str, response_url: str) -> str:
    payload = json.loads((PAYLOADS / "block_actions.message_button.json").read_text())
    payload["user"] = {"id": user}
    payload["response_url"] = response_url
    payload["actions"][0].update(action_id="run_approve", value=str(run_id))
    return json.dumps(
        {
            "envelope_id": envelope_id,
            "type": "interactive",
            "accepts_response_payload": False,
            "payload": payload,
        }
    )


def test_slash_commands_and_clicks_arrive_over_socket_mode(tmp_path: Path) -> None:
    outgoing: queue.Queue[str] = queue.Queue()
    acks: list[tuple[float, dict[str, object]]] = []
    sent_at: dict[str, float] = {}
    closes: queue.Queue[object] = queue.Queue()

    def handler(connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "hello", "num_connections": 1}))
        while True:
            try:
                message = outgoing.get_nowait()
                envelope = json.loads(message)
                sent_at[envelope["envelope_id"]] = time.monotonic()
                connection.send(message)
            except queue.Empty:
                pass
            try:
                received = connection.recv(timeout=0.05)
            except TimeoutError:
                continue
            except Exception:
                closes.put(connection.protocol.close_rcvd)  # None: no close frame came
                return
            acks.append((time.monotonic(), json.loads(received)))

    with serve(handler, "127.0.0.1", 0) as server:
        port = server.socket.getsockname()[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        fake = FakeSlack(socket_url=f"ws://127.0.0.1:{port}/link")
        env = {"SLACK_APP_TOKEN": "xapp-1-test", "SLACK_SIGNING_SECRET": ""}
        with running_bot(tmp_path, env=env, fake=fake) as bot:
            fake.wait_for(lambda: fake.sent("apps.connections.open"))
            outgoing.put(slash_envelope("env-1", "scale web 1", "W111", fake.response_url))
            fake.wait_for(lambda: any(a.get("envelope_id") == "env-1" for _, a in acks))
            outgoing.put(slash_envelope("env-2", "scale web lots", "W111", fake.response_url))
            fake.wait_for(lambda: any(a.get("envelope_id") == "env-2" for _, a in acks))
            card = fake.wait_for(lambda: fake.sent("chat.postMessage"))
            outgoing.put(click_envelope("env-3", 1, "UMALLORY", fake.response_url))
            outgoing.put(click_envelope("env-4", 1, "UBOB", fake.response_url))
            fake.wait_for(lambda: any("succeeded" in text_of(c) for c in fake.sent("chat.update")))
            exit_seconds = bot.sigterm()
        close = closes.get(timeout=10)
        server.shutdown()

    assert exit_seconds < 6  # idle: well inside the 25 s deadline (a loaded CI box is slow)
    assert close is not None and close.code == 1000  # a proper close, not a dropped socket

    acked = {a["envelope_id"]: (at, a) for at, a in acks}
    assert acked["env-1"][0] - sent_at["env-1"] < 3
    error = acked["env-2"][1]["payload"]
    assert isinstance(error, dict) and "is not a server count" in str(error["text"])
    assert "Run 1" in text_of(card[0])
    refusals = [c.params["text"] for c in fake.sent("respond")]
    assert any("You are not an approver" in r for r in refusals)
