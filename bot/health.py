"""GET /healthz: ready once Slack answered at start, then healthy while the database takes
writes and, in Socket Mode, while the WebSocket to Slack has not been down longer than a
threshold."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from pipeline.state import monitor
from pipeline.state.store import Store

StartResponse = Callable[..., Any]


class Readiness:
    """Not ready until Slack answers at start; ``waiting_for`` says what byoi waits for."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.waiting_for = "start-up"


class Health:
    def __init__(
        self,
        store: Store,
        *,
        socket_down_limit: float = 60.0,
        readiness: Readiness | None = None,
    ) -> None:
        self.store = store
        self.readiness = readiness
        self.socket_down_limit = socket_down_limit
        self._connected: Callable[[], bool] | None = None
        self._last_up = time.monotonic()
        self._stop = threading.Event()

    def watch_socket(self, connected: Callable[[], bool], every: float = 0.5) -> None:
        """Poll ``connected`` in the background, remembering when the socket was last up."""
        self._connected = connected
        self._last_up = time.monotonic()

        def poll() -> None:
            while not self._stop.wait(every):
                if connected():
                    self._last_up = time.monotonic()

        threading.Thread(target=poll, name="socket-health", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def waiting_for(self) -> str | None:
        """What byoi still waits for before it takes requests, if anything."""
        if self.readiness is None or self.readiness.ready.is_set():
            return None
        return self.readiness.waiting_for

    def problems(self) -> list[str]:
        found = []
        waiting = self.waiting_for()
        if waiting is not None:
            found.append(f"waiting for {waiting}")
        if self._connected is not None:
            if self._connected():
                self._last_up = time.monotonic()
            down = time.monotonic() - self._last_up
            if down > self.socket_down_limit:
                found.append(f"the Slack WebSocket has been down for {down:.0f}s")
        problem = monitor.write_problem(self.store)
        if problem:
            found.append(problem)
        return found

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        problems = self.problems()
        body: dict[str, Any] = {"ok": not problems}
        if problems:
            body["problems"] = problems
        waiting = self.waiting_for()
        if waiting is not None:
            body["waiting_for"] = waiting
        start_response(
            "503 Service Unavailable" if problems else "200 OK",
            [("Content-Type", "application/json")],
        )
        return [json.dumps(body).encode()]
