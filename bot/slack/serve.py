"""`byoi serve`: the Slack bot over HTTP (waitress) or Socket Mode, with recovery at start."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App as BoltApp
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.slack.alertcards import AlertCards
from bot.slack.app import Directory, Services, create_app
from bot.slack.cards import Cards, Poster
from bot.slack.schedule import Schedule
from bot.wiring import App
from pipeline.config.model import Config, ThreadUpdates
from pipeline.domain.models import Run
from pipeline.ports import Clock
from pipeline.services.display import Display

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


def web_client(token: str, base_url: str | None = None) -> WebClient:
    """A Web API client that retries 429 (after Retry-After), connection errors and 5xx."""
    kwargs: dict[str, Any] = {}
    if base_url:
        kwargs["base_url"] = base_url.rstrip("/") + "/"
    return WebClient(
        token=token,
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


def wsgi(bolt: BoltApp) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    handler = SlackRequestHandler(bolt)
    replays = ReplayGuard()

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") == "GET":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"ok": true}']
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


def _thread_updates_of(config: Config) -> Callable[[Run], ThreadUpdates]:
    def thread_updates(run: Run) -> ThreadUpdates:
        app = config.apps.get(run.app)
        env = app.environments.get(run.env) if app else None
        return env.thread_updates if env else ThreadUpdates.PHASES

    return thread_updates


def _sweep_expiries(app: App, cards: Cards, stop: threading.Event, every: float = 15.0) -> None:
    while not stop.wait(every):
        try:
            for run in app.service.expire_due(app.clock()):
                cards.run_changed(run)
        except Exception:
            log.exception("expiry sweep failed")


def slack_client() -> WebClient:
    """The bot's Web API client; from here on no Slack token reaches a log line."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    return web_client(os.environ["SLACK_BOT_TOKEN"], os.environ.get("SLACK_API_URL"))


def run_cards(client: WebClient, display: Display, clock: Clock, config: Config) -> Cards:
    """The notifier for Slack: one card per run, in the run's channel or the app's."""
    return Cards(
        client,
        display,
        clock,
        _channel_of(config),
        poster=Poster(client),
        thread_updates_of=_thread_updates_of(config),
    )


def serve(app: App, cards: Cards, client: WebClient) -> int:
    """Answer Slack until stopped; ``app`` is built and recovered, ``cards`` is its notifier."""
    cards.start()
    alert_cards = AlertCards(cards.post, app.display, app.clock)
    services = Services(
        app.service,
        app.display,
        cards,
        Directory.for_config(client, app.config),
        app.clock,
        alert_cards,
        ThreadPoolExecutor(int(os.environ.get("BYOI_WORKERS", "2")), thread_name_prefix="work"),
    )
    bolt = create_app(services, client, os.environ.get("SLACK_SIGNING_SECRET") or None)
    stop = threading.Event()
    threading.Thread(target=_sweep_expiries, args=(app, cards, stop), daemon=True).start()

    def scan(trigger: str) -> None:
        alert_cards.show(app.service.views.scan(app.clock(), trigger).changes)

    schedule = Schedule(app.config, scan)
    schedule.start()
    try:
        if os.environ.get("SLACK_APP_TOKEN"):
            _socket_mode(bolt, client, os.environ["SLACK_APP_TOKEN"])
        else:
            _http(bolt)
    finally:
        schedule.stop()
        stop.set()
        app.runner.wait(60)
        cards.stop()
        app.store.close()
    return 0


def _http(bolt: BoltApp) -> None:
    from waitress.server import create_server

    port = int(os.environ.get("PORT", "3000"))
    host = os.environ.get("BYOI_HOST", "0.0.0.0")  # noqa: S104 - Slack must reach it
    server = create_server(wsgi(bolt), host=host, port=port, threads=8)
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    print(f"byoi: listening on http://{host}:{server.effective_port}/slack/events", flush=True)
    with contextlib.suppress(KeyboardInterrupt, OSError):
        server.run()


def _socket_mode(bolt: BoltApp, client: WebClient, app_token: str) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    socket_client = WebClient(token=app_token, base_url=client.base_url)
    handler = SocketModeHandler(bolt, app_token, web_client=socket_client)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    handler.connect()  # type: ignore[no-untyped-call]
    print("byoi: connected to Slack in Socket Mode", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    handler.close()  # type: ignore[no-untyped-call]
