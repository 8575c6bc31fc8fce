"""The plumbing every in-repo API fake shares: a threaded stdlib HTTP server on 127.0.0.1 that
reads each request with its body and writes a JSON answer (``HttpFake``), and, for REST fakes,
records each request and answers through a table of routes (``FakeApi``).

A REST fake is a dataclass that mixes in ``FakeApi``, owns ``requests`` and ``_lock`` and
answers in ``_answer``; its handlers are methods named in a route table of
``(path pattern, HTTP method, handler name)``, called with ``query``, ``body`` and the
pattern's named groups. A fake with its own recording (the Slack one) mixes in ``HttpFake``
and overrides ``_serve`` (and ``_body`` if its bodies are not JSON).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlparse

Answer = tuple[int, Any]
"""A handler's status and JSON body (None: no body)."""
Reply = tuple[int, Any, Mapping[str, str]]
"""What a fake sends back: status, JSON body (None: no body) and extra headers."""
Route = tuple[str, str, str]
DROP = 0
"""A status that answers nothing: the connection is closed, as a dropped one is."""


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops connections a client opens at once (8 calls
    # at a time, each its own HTTP/1.0 connection), and each dropped one waits a 1 s SYN retry.
    request_queue_size = 128


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    at: float


class HttpFake:
    """Serving for a fake: start, stop, its URL; reading requests and writing answers."""

    _server: ThreadingHTTPServer | None = None
    protocol = "HTTP/1.0"
    """HTTP/1.1 keeps connections open between requests, as the real service does."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return int(self._server.server_address[1])

    def start(self, port: int = 0) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def do_PUT(self) -> None:
                fake._serve(self, "PUT")

            def do_DELETE(self) -> None:
                fake._serve(self, "DELETE")

            def log_message(self, *args: object) -> None:
                pass

        Handler.protocol_version = self.protocol
        self._server = _Server(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    def _body(self, raw: bytes, headers: Message) -> Any:
        """A request's body as the fake reads it (JSON; an empty body reads as ``{}``)."""
        return json.loads(raw) if raw else {}

    def _read(self, handler: BaseHTTPRequestHandler, method: str) -> Request:
        parsed = urlparse(handler.path)
        length = int(handler.headers.get("Content-Length", "0") or 0)
        raw = handler.rfile.read(length) if length else b""
        return Request(
            method,
            unquote(parsed.path),
            {k: v[0] for k, v in parse_qs(parsed.query).items()},
            self._body(raw, handler.headers),
            time.time(),
        )

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        status, answer, headers = reply
        data = json.dumps(answer).encode() if answer is not None else b""
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


class FakeApi(HttpFake):
    """Recording and routing for a REST fake; see the module docstring."""

    requests: list[Request]
    _lock: threading.RLock

    def calls(self, method: str, pattern: str) -> list[Request]:
        """The requests recorded so far with ``method`` and a path matching ``pattern``."""
        with self._lock:
            return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def _answer(self, request: Request, headers: Message) -> Reply:
        raise NotImplementedError

    def _dispatch(self, routes: list[Route], request: Request, path: str) -> Answer | None:
        """The answer of the handler whose route matches ``path``; None if none does."""
        for pattern, method, name in routes:
            match = re.fullmatch(pattern, path)
            if match and method == request.method:
                answer: Answer = getattr(self, name)(
                    query=request.query, body=request.body, **match.groupdict()
                )
                return answer
        return None

    def answer_late(self, method: str, pattern: str, seconds: float) -> None:
        """Answer the next request matching only after ``seconds`` (past a client's timeout)."""
        with self._lock:
            self.__dict__.setdefault("_late", []).append((method, pattern, seconds))

    def _lateness(self, request: Request) -> float:
        late: list[tuple[str, str, float]] = self.__dict__.get("_late", [])
        for index, (method, pattern, seconds) in enumerate(late):
            if method == request.method and re.search(pattern, request.path):
                del late[index]
                return seconds
        return 0.0

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        request = self._read(handler, method)
        with self._lock:
            self.requests.append(request)
            reply = self._answer(request, handler.headers)
            lateness = self._lateness(request)
        if reply[0] == DROP:
            handler.close_connection = True  # no answer at all: the client sees it dropped
            return
        time.sleep(lateness)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it stopped waiting
            self._send(handler, reply)
