"""What reaches Bolt: signed, of sane size and well formed; the rest is refused.

Over HTTP, unsigned or badly signed requests get 401 before their body is looked at; signed ones
that are not a request Slack sends (broken JSON, a payload that is not an object, a click
without actions) get 400. Over Socket Mode such envelopes are acknowledged and dropped. Bolt
would answer both with a 500 (or no acknowledgement) and a traceback.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

MAX_BODY = 1024 * 1024
"""Slack's largest payloads (view submissions) are well under this."""
SKEW_SECONDS = 300
"""Slack's own rule: a request signed more than five minutes ago is refused."""
PAYLOAD_TYPES = frozenset(
    (
        "block_actions",
        "block_suggestion",
        "view_submission",
        "view_closed",
        "shortcut",
        "message_action",
        "interactive_message",
        "dialog_submission",
        "dialog_cancellation",
        "dialog_suggestion",
    )
)
EVENT_TYPES = frozenset(("url_verification", "event_callback", "app_rate_limited"))


@dataclass(frozen=True)
class Refusal:
    status: str
    reason: str

    def body(self) -> bytes:
        return json.dumps({"error": self.reason}).encode()


UNSIGNED = Refusal("401 Unauthorized", "invalid request signature")


def admit(
    environ: dict[str, Any], secret: str | None, now: Callable[[], float] = time.time
) -> Refusal | None:
    """None when the request may go on to Bolt (its body put back for it), else why not."""
    length = str(environ.get("CONTENT_LENGTH") or "0")
    if not length.isascii() or not length.isdigit():
        return Refusal("400 Bad Request", "bad Content-Length")
    if int(length) > MAX_BODY:
        return Refusal("413 Content Too Large", "request body too large")
    body: bytes = environ["wsgi.input"].read(int(length)) if int(length) else b""
    environ["wsgi.input"] = io.BytesIO(body)
    if secret is not None and not _signed(environ, body, secret, now()):
        return UNSIGNED
    problem = _malformed(str(environ.get("CONTENT_TYPE", "")), body)
    return Refusal("400 Bad Request", problem) if problem else None


def _signed(environ: dict[str, Any], body: bytes, secret: str, now: float) -> bool:
    timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""))
    signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", ""))
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > SKEW_SECONDS:
        return False
    message = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def _malformed(content_type: str, body: bytes) -> str | None:
    """Why a signed body is not something Slack sends, or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    if content_type.startswith("application/json"):
        return _check_event(_json_object(text))
    form = parse_qs(text, keep_blank_values=True)
    if "payload" in form:
        return _check_payload(_json_object(form["payload"][0]))
    if "command" in form:
        return None if form["command"][0].startswith("/") else "command must start with /"
    if "ssl_check" in form:
        return None
    return "not a Slack command, payload or event"


def envelope_problem(kind: str, payload: Any) -> str | None:
    """Why a Socket Mode envelope is not something Slack sends, or None."""
    if not isinstance(payload, dict):
        return "payload is not an object"
    if kind == "slash_commands":
        command = payload.get("command")
        return None if isinstance(command, str) and command.startswith("/") else "bad command"
    if kind == "interactive":
        return _check_payload(payload)
    if kind == "events_api":
        return _check_event(payload)
    return f"unknown envelope type {kind[:40]!r}"


def _json_object(text: str) -> dict[str, Any] | str:
    try:
        value = json.loads(text)
    except ValueError:
        return "body is not JSON"
    return value if isinstance(value, dict) else "JSON body is not an object"


def _check_event(body: dict[str, Any] | str) -> str | None:
    if isinstance(body, str):
        return body
    if body.get("type") not in EVENT_TYPES:
        return "unknown event type"
    if body["type"] == "event_callback" and not isinstance(body.get("event"), dict):
        return "event_callback without an event"
    return None


def _check_payload(payload: dict[str, Any] | str) -> str | None:
    if isinstance(payload, str):
        return f"payload: {payload}"
    if payload.get("type") not in PAYLOAD_TYPES:
        return "unknown payload type"
    if payload["type"] != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions:
        return "block_actions without actions"
    if not all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions):
        return "an action without an action_id"
    return None
