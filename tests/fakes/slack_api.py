"""A local fake of the Slack Web API: records every call, can answer 429 or 500 on demand.

Keeps the messages posted (with their metadata) and answers `conversations.replies` for a
thread the way Slack does: the parent first, then the replies, cursor-paginated, metadata only
with `include_all_metadata`; and `conversations.history` for a channel (its messages newest
first, thread replies left out unless broadcast), the same way. It can lack a scope, and hold
the answer to a call it accepted (to kill byoi between Slack taking a post and byoi learning
its ts).
Also receives `response_url` posts (as method "respond") so ephemeral replies can be asserted.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.http import HttpFake, Reply


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float
    status: int
    ts: str | None = None
    """The message the call posted or edited (as answered)."""


@dataclass
class Fault:
    status: int
    retry_after: int | None
    times: int


@dataclass
class Hold:
    """The answer to the first call of ``method`` matching ``matches`` waits for ``release``
    (the call itself is accepted, as Slack would have)."""

    method: str
    matches: Callable[[dict[str, Any]], bool]
    accepted: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


# Which scope each method the fake checks needs (as Slack names it in `missing_scope`).
NEEDED = {"conversations.replies": "channels:history", "conversations.history": "channels:history"}


@dataclass
class FakeSlack(HttpFake):
    calls: list[Call] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    socket_url: str = ""
    faults: dict[str, Fault] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    """Seconds to wait before answering a method (a slow Slack)."""
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """Messages posted, by (channel, ts), as Slack would return them (edits applied)."""
    scopes_missing: set[str] = field(default_factory=set)
    holds: list[Hold] = field(default_factory=list)
    outside: set[str] = field(default_factory=set)
    """Channels byoi posts in without being a member: their history is not_in_channel."""
    _ts: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)
    protocol = "HTTP/1.1"  # replies to response_url reuse their connection (bot/slack/respond.py)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    @property
    def response_url(self) -> str:
        return f"{self.url}/respond/T1/1/abc"

    def fail(
        self, method: str, status: int, *, times: int = 1, retry_after: int | None = None
    ) -> None:
        with self._lock:
            self.faults[method] = Fault(status, retry_after, times)

    def heal(self) -> None:
        """Slack answers every call normally again."""
        with self._lock:
            self.faults.clear()
            self.delays.clear()

    def hold(self, method: str, matches: Callable[[dict[str, Any]], bool]) -> Hold:
        """Accept the first matching call of ``method`` but answer it only once released."""
        held = Hold(method, matches)
        with self._lock:
            self.holds.append(held)
        return held

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The replies in the thread of message ``ts`` (not the parent), oldest first."""
        with self._lock:
            return [
                dict(m)
                for (ch, m_ts), m in sorted(self.messages.items(), key=lambda i: float(i[0][1]))
                if ch == channel and m.get("thread_ts") == ts and m_ts != ts
            ]

    # serving ----------------------------------------------------------------------------

    def _body(self, raw: bytes, headers: Message) -> Any:
        """A Web API call's parameters: a JSON body, or a form one."""
        if "json" in headers.get("Content-Type", ""):
            return json.loads(raw or b"{}")
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        request = self._read(handler, method)
        path = request.path
        name = "respond" if path.startswith("/respond/") else path.split("/")[-1]
        params: dict[str, Any] = request.body or request.query
        self._pause(name)
        with self._lock:
            fault = self._fault(name, params)
            reply = fault or self._accept(name, params)
            held = None if fault else self._take_hold(name, params)
        if held is not None:
            held.accepted.set()
            held.release.wait(60)
        with contextlib.suppress(OSError):  # the caller is gone (killed while its answer was held)
            self._send(handler, reply)

    def _pause(self, method: str) -> None:
        """Wait as long as a slow Slack would before answering ``method``."""
        with self._lock:
            delay = self.delays.get(method, 0.0)
        if delay:
            time.sleep(delay)

    def _fault(self, method: str, params: dict[str, Any]) -> Reply | None:
        """The error a failing ``method`` answers (recorded as a call); None if it is healthy."""
        fault = self.faults.get(method)
        if fault is None or fault.times <= 0:
            return None
        fault.times -= 1
        self.calls.append(Call(method, params, time.monotonic(), fault.status))
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        return fault.status, {"ok": False, "error": "ratelimited"}, headers

    def _accept(self, method: str, params: dict[str, Any]) -> Reply:
        """Take the call as Slack would and record it with the message it posted or edited."""
        body = self._answer(method, params)
        self.calls.append(Call(method, params, time.monotonic(), 200, body.get("ts")))
        return 200, body, {}

    def _take_hold(self, method: str, params: dict[str, Any]) -> Hold | None:
        """The hold on this call, if one matches (a hold applies once)."""
        held = next((h for h in self.holds if h.method == method and h.matches(params)), None)
        if held is not None:
            self.holds.remove(held)
        return held

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "user_id": "UBYOI",
                "bot_id": "BBYOI",
                "team_id": "T1",
                "url": "https://example.invalid/",
            }
        if method in self.scopes_missing:
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": NEEDED.get(method, "unknown"),
                "provided": "commands,chat:write,chat:write.public,usergroups:read",
            }
        if method in ("chat.postMessage", "chat.update"):
            self._ts += 1
            ts = params.get("ts") or f"1700000000.{self._ts:06d}"
            message = self._keep(method, params, ts)
            return {"ok": True, "channel": params.get("channel"), "ts": ts, "message": message}
        if method == "conversations.replies":
            return self._replies(params)
        if method == "conversations.history":
            if str(params.get("channel")) in self.outside:
                return {"ok": False, "error": "not_in_channel"}
            return self._history(params)
        if method == "usergroups.users.list":
            return {"ok": True, "users": self.groups.get(str(params.get("usergroup")), [])}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_url}
        return {"ok": True}

    # messages ---------------------------------------------------------------------------

    def _keep(self, method: str, params: dict[str, Any], ts: str) -> dict[str, Any]:
        """Remember a posted message, or apply an edit to it (what is not sent stays)."""
        key = (str(params.get("channel")), ts)
        message = self.messages.get(key) or {
            "type": "message",
            "user": "UBYOI",
            "bot_id": "BBYOI",
            "ts": ts,
        }
        if method == "chat.update" and key not in self.messages:
            return message
        for name in ("text", "blocks", "metadata"):
            value = params.get(name)
            if isinstance(value, str) and name != "text":
                value = json.loads(value)
            if value is not None:
                message[name] = value
        if method == "chat.postMessage" and params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
            message["parent_user_id"] = "UBYOI"
            if params.get("reply_broadcast") in (True, "true", "1"):
                message["subtype"] = "thread_broadcast"
        self.messages[key] = message
        return dict(message)

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        """conversations.history: the channel's messages, not thread replies (broadcasts
        aside), newest first; metadata only if asked."""
        channel = str(params.get("channel"))
        found = sorted(
            (
                m
                for (ch, m_ts), m in self.messages.items()
                if ch == channel
                and (m.get("thread_ts") in (None, m_ts) or m.get("subtype") == "thread_broadcast")
            ),
            key=lambda m: -float(m["ts"]),
        )
        return self._page(found, params)

    def _page(self, found: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        """One page of ``found``, cursor-paginated as Slack does; metadata only if asked."""
        start = int(str(params.get("cursor") or "0").removeprefix("next:") or 0)
        limit = int(params.get("limit") or 1000)
        page = found[start : start + limit]
        with_metadata = str(params.get("include_all_metadata")).lower() in ("1", "true")
        messages = [{k: v for k, v in m.items() if with_metadata or k != "metadata"} for m in page]
        more = start + limit < len(found)
        return {
            "ok": True,
            "messages": messages,
            "has_more": more,
            "response_metadata": {"next_cursor": f"next:{start + limit}" if more else ""},
        }

    def _replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """conversations.replies: the parent, then its replies; metadata only if asked."""
        channel, ts = str(params.get("channel")), str(params.get("ts"))
        if (channel, ts) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        thread = sorted(
            (
                m
                for (ch, m_ts), m in self.messages.items()
                if ch == channel and (m_ts == ts or m.get("thread_ts") == ts)
            ),
            key=lambda m: float(m["ts"]),
        )
        return self._page(thread, params)

    # reading what was sent -------------------------------------------------------------

    def sent(self, method: str, ok_only: bool = True) -> list[Call]:
        with self._lock:
            return [
                c for c in self.calls if c.method == method and (c.status == 200 or not ok_only)
            ]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out; calls so far: {[c.method for c in self.calls]}")


def text_of(call: Call) -> str:
    """Everything readable in a message: its text and its blocks' texts."""
    blocks = call.params.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return str(call.params.get("text", "")) + "\n" + json.dumps(blocks, ensure_ascii=False)


def main() -> None:
    """Run the fake alone (benchmarks keep it out of the measuring process): prints its URL."""
    import signal

    fake = FakeSlack().start()
    print(fake.url, flush=True)
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    fake.stop()


if __name__ == "__main__":
    main()
