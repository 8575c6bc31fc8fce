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

from bot.alertcards import AlertCards
from bot.cards import Cards, Poster
from bot.schedule import Schedule
from bot.slack import Directory, Services, create_app
from bot.wiring import App, build
from pipeline import recovery
from pipeline.config import Config
from pipeline.models import Run

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]
WSGI_THREADS = 8
NOTIFY_INTERVAL = 1.0
"""Seconds between run notifications to the Slack cards (bench/pipeline.py uses the same)."""
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


def _sweep_expiries(app: App, cards: Cards, stop: threading.Event, every: float = 15.0) -> None:
    while not stop.wait(every):
        try:
            for run in app.service.expire_due(app.clock()):
                cards.run_changed(run)
        except Exception:
            log.exception("expiry sweep failed")


def serve(config: Config) -> int:

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    client = web_client(os.environ["SLACK_BOT_TOKEN"], os.environ.get("SLACK_API_URL"))
    cards_ref: list[Cards] = []

    class LateCards:
        def run_changed(self, run: Run) -> None:
            cards_ref[0].run_changed(run)

    # Slack edits are coalesced to one per 2 s anyway: re-reading a run on every step of every
    # server is waste, and even ten reads a second of a 1,000-server run cost a third of a core.
    app = build(config, LateCards(), notify_interval=NOTIFY_INTERVAL)

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
        ThreadPoolExecutor(int(os.environ.get("BYOI_WORKERS", "2")), thread_name_prefix="work"),
    )
    bolt = create_app(services, client, os.environ.get("SLACK_SIGNING_SECRET") or None)
    now = app.clock()
    for orphan in recovery.reconcile(app.store, config, app.providers, now):
        log.warning("reconciler: %s (%s): %s", orphan.server_id, orphan.key, orphan.outcome)
    recovery.resume(app.store, app.runner, now)
    stop = threading.Event()
    threading.Thread(target=_sweep_expiries, args=(app, cards, stop), daemon=True).start()

    def scan(trigger: str) -> None:
        alert_cards.show(app.service.scan(app.clock(), trigger).changes)

    schedule = Schedule(config, scan)
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
    server = create_server(wsgi(bolt), host=host, port=port, threads=WSGI_THREADS)
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
