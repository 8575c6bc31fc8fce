"""`byoi serve`: the Slack bot over HTTP (waitress) or Socket Mode, with recovery at start."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App as BoltApp
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.alertcards import AlertCards
from bot.cards import Cards, Poster
from bot.lifecycle import (
    Deadline,
    Readiness,
    close_socket_mode,
    exit_now,
    on_stop_signals,
    run_in_background,
    wait_for_slack,
)
from bot.schedule import Schedule
from bot.slack import Directory, Services, create_app
from bot.wiring import App, build
from bot.workqueue import WorkQueue
from pipeline import recovery
from pipeline.config import Config
from pipeline.models import Run

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]
_SECRET = re.compile(r"(xox[abposr]-|xapp-)[A-Za-z0-9-]+")


class RedactSecrets(logging.Filter):
    """No Slack token reaches a log line, whoever logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _SECRET.search(message):
            record.msg = _SECRET.sub(r"\1[redacted]", message)
            record.args = None
        return True


def web_client(token: str, base_url: str | None = None, timeout: float = 10.0) -> WebClient:
    """A Web API client with an explicit timeout (connect and read) that retries 429 (after
    Retry-After), connection errors and 5xx."""
    kwargs: dict[str, Any] = {}
    if base_url:
        kwargs["base_url"] = base_url.rstrip("/") + "/"
    return WebClient(
        token=token,
        timeout=int(timeout),
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=5),
            ConnectionErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=3),
        ],
        **kwargs,
    )


class ReplayGuard:
    """Refuses a signed request seen before. Slack's timestamp check (5 minutes, in Bolt) bounds
    how long a captured request stays valid; this closes that window."""

    def __init__(self, window: float = 300.0) -> None:
        self.window = window
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, signature: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10_000 or next(iter(self._seen.values()), now) < now - self.window:
                self._seen = {s: t for s, t in self._seen.items() if t >= now - self.window}
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True


def wsgi(
    bolt: BoltApp | Callable[[], BoltApp | None], readiness: Readiness | None = None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The HTTP front: /healthz (not ready until Slack answers), then Bolt's handler; ``bolt``
    may be a function that gives the app once it exists."""
    given = bolt
    handlers: list[SlackRequestHandler] = []
    replays = ReplayGuard()

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        ready = readiness is None or readiness.ready.is_set()
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") == "GET":
            if not ready:
                assert readiness is not None
                start_response("503 Service Unavailable", [("Content-Type", "application/json")])
                waiting = json.dumps({"ok": False, "waiting_for": readiness.waiting_for})
                return [waiting.encode()]
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"ok": true}']
        app = given if isinstance(given, BoltApp) else given()
        if not ready or app is None:
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error": "byoi is starting"}']
        if not handlers:
            handlers.append(SlackRequestHandler(app))
        handler = handlers[0]
        signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", ""))
        if signature and not replays.first_time(signature):
            log.warning("refused a replayed request")
            start_response("401 Unauthorized", [("Content-Type", "application/json")])
            return [b'{"error": "replayed request"}']
        return handler(environ, start_response)

    return application


def _channel_of(config: Config) -> Callable[[Run], str | None]:
    def channel(run: Run) -> str | None:
        if run.channel:
            return run.channel
        app = config.apps.get(run.app)
        env = app.environments.get(run.env) if app else None
        return env.channel if env else None

    return channel


def serve(config: Config) -> int:
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    stopping = threading.Event()
    on_stop_signals(stopping)
    client = web_client(os.environ["SLACK_BOT_TOKEN"], os.environ.get("SLACK_API_URL"))
    cards_ref: list[Cards] = []

    class LateCards:
        def run_changed(self, run: Run) -> None:
            cards_ref[0].run_changed(run)

    # Slack edits are coalesced anyway: re-reading a run on every step of every server is waste.
    app = build(config, LateCards(), notify_interval=0.1)
    poster = Poster(client)
    cards = Cards(client, app.store, app.clock, _channel_of(config), poster=poster)
    cards_ref.append(cards)
    cards.start()
    alert_cards = AlertCards(poster, app.store, app.clock)
    services = Services(
        app.service,
        app.store,
        cards,
        Directory.for_config(client, config),
        app.clock,
        alert_cards,
        WorkQueue(
            int(os.environ.get("BYOI_WORKERS", "2")), int(os.environ.get("BYOI_QUEUE", "100"))
        ),
    )
    schedule = Schedule(config, lambda trigger: _scan(app, alert_cards, trigger))
    readiness = Readiness()
    started = _Started()
    front = _front(started, readiness)

    def start() -> None:
        _recover(app, cards, alert_cards)
        run_in_background("housekeeping", lambda: _housekeeping(app, cards, alert_cards, stopping))
        schedule.start()
        if not wait_for_slack(client, stopping, readiness):
            return
        started.bolt = create_app(services, client, os.environ.get("SLACK_SIGNING_SECRET") or None)
        front.connect(started.bolt, client)
        readiness.ready.set()

    run_in_background("start", start)
    stopping.wait()
    deadline = Deadline(float(os.environ.get("BYOI_SHUTDOWN_SECONDS", "25")))
    _shut_down(app, front, schedule, services, cards, deadline)
    return 0


class _Started:
    bolt: BoltApp | None = None


def _recover(app: App, cards: Cards, alert_cards: AlertCards) -> None:
    """Before taking requests: remove orphans, resume runs, re-queue cards behind the store."""
    now = app.clock()
    for orphan in recovery.reconcile(app.store, app.config, app.providers, now):
        log.warning("reconciler: %s (%s): %s", orphan.server_id, orphan.key, orphan.outcome)
    recovery.resume(app.store, app.runner, now)
    log.info("re-queued %d run card(s) behind the store", cards.resync())
    alert_cards.resync()


def _scan(app: App, alert_cards: AlertCards, trigger: str) -> None:
    alert_cards.show(app.service.scan(app.clock(), trigger).changes)


def _housekeeping(
    app: App, cards: Cards, alert_cards: AlertCards, stop: threading.Event, every: float = 15.0
) -> None:
    """Expire pending approvals, and show alert cards that fell behind (Slack was down)."""
    while not stop.wait(every):
        try:
            for run in app.service.expire_due(app.clock()):
                cards.run_changed(run)
            alert_cards.resync()
        except Exception:
            log.exception("housekeeping failed")


def _shut_down(
    app: App,
    front: _Front,
    schedule: Schedule,
    services: Services,
    cards: Cards,
    deadline: Deadline,
) -> None:
    """Everything under one deadline; what is left is resumed by the next start."""
    front.close()
    app.runner.stop()
    schedule.stop()
    services.work.stop(deadline.left(keep=3.0))
    if not app.runner.wait(deadline.left(keep=2.0)):
        log.warning("steps still in flight at the deadline; the next start resumes them")
    cards.stop(deadline.left(keep=0.5))
    busy = app.runner.busy
    if not busy:
        app.store.close()
    exit_now(0, busy)


class _Front:
    """How Slack reaches byoi: HTTP (waitress) or Socket Mode."""

    def __init__(self, socket_token: str | None) -> None:
        self.socket_token = socket_token
        self._server: Any = None
        self._socket: Any = None

    def listen(self, application: Any) -> None:
        from waitress.server import create_server

        port = int(os.environ.get("PORT", "3000"))
        host = os.environ.get("BYOI_HOST", "0.0.0.0")  # noqa: S104 - Slack must reach it
        self._server = create_server(application, host=host, port=port, threads=8)
        print(f"byoi: listening on http://{host}:{self._server.effective_port}/slack/events")
        sys.stdout.flush()
        run_in_background("http", self._serve_http)

    def _serve_http(self) -> None:
        with contextlib.suppress(OSError):
            self._server.run()

    def connect(self, bolt: BoltApp, client: WebClient) -> None:
        if self.socket_token is None:
            return
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        socket_client = WebClient(token=self.socket_token, base_url=client.base_url, timeout=10)
        self._socket = SocketModeHandler(bolt, self.socket_token, web_client=socket_client)
        self._socket.connect()
        print("byoi: connected to Slack in Socket Mode", flush=True)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._socket is not None:
            close_socket_mode(self._socket)


def _front(started: _Started, readiness: Readiness) -> _Front:
    front = _Front(os.environ.get("SLACK_APP_TOKEN") or None)
    if front.socket_token is None:
        front.listen(wsgi(lambda: started.bolt, readiness))
    return front
