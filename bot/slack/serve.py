"""`byoi serve`: the Slack bot over HTTP (waitress) or Socket Mode, with recovery at start.

Both modes serve GET /healthz and GET /metrics (Socket Mode on a small side server).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from slack_bolt import App as BoltApp
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot import logs
from bot.health import Health
from bot.metrics import Metrics, StoreSource
from bot.slack.alertcards import AlertCards
from bot.slack.app import Directory, Services, create_app
from bot.slack.cards import Cards, Poster
from bot.slack.metered import CountedRetries, CountingPool, MeteredWebClient, RateLimitWatcher
from bot.slack.schedule import Schedule
from bot.wiring import App
from pipeline.config.model import Config
from pipeline.domain.models import Run
from pipeline.ports import Clock
from pipeline.services.display import Display

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
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


def web_client(
    token: str, base_url: str | None = None, metrics: Metrics | None = None
) -> WebClient:
    """A Web API client that retries 429 (after Retry-After), connection errors and 5xx;
    with ``metrics``, its calls, retries and 429s are counted."""
    kwargs: dict[str, Any] = {}
    if base_url:
        kwargs["base_url"] = base_url.rstrip("/") + "/"
    handlers = {
        "rate_limited": RateLimitErrorRetryHandler(max_retry_count=5),
        "connection_error": ConnectionErrorRetryHandler(max_retry_count=3),
        "server_error": ServerErrorRetryHandler(max_retry_count=3),
    }
    if metrics is None:
        return WebClient(token=token, retry_handlers=list(handlers.values()), **kwargs)
    client = MeteredWebClient(
        token=token,
        retry_handlers=[
            RateLimitWatcher(metrics.slack_rate_limited),
            *(CountedRetries(h, why, metrics.slack_retries) for why, h in handlers.items()),
        ],
        **kwargs,
    )
    client.metrics = metrics
    return client


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


def _ok(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"ok": true}']


def wsgi(bolt: BoltApp, pages: Mapping[str, WSGIApp] | None = None) -> WSGIApp:
    """Slack's requests, and the GET ``pages`` (/healthz always answers)."""
    handler = SlackRequestHandler(bolt)
    replays = ReplayGuard()
    gets = {"/healthz": _ok, **(pages or {})}

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        page = gets.get(str(environ.get("PATH_INFO")))
        if page is not None and environ.get("REQUEST_METHOD") == "GET":
            return page(environ, start_response)
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


def slack_client(metrics: Metrics | None = None) -> WebClient:
    """The bot's Web API client; from here on no Slack token reaches a log line."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    # Taken out of the environment: Bolt would read it again beside our client (and warn that
    # the token is unused), and no child process needs it.
    token = os.environ.pop("SLACK_BOT_TOKEN")
    return web_client(token, os.environ.get("SLACK_API_URL"), metrics)


def pages_only(pages: Mapping[str, WSGIApp]) -> WSGIApp:
    """The side server of Socket Mode: GET ``pages``, 404 for anything else."""

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        page = pages.get(str(environ.get("PATH_INFO")))
        if page is not None and environ.get("REQUEST_METHOD") == "GET":
            return page(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "not found"}']

    return application


def run_cards(client: WebClient, display: Display, clock: Clock, config: Config) -> Cards:
    """The notifier for Slack: one card per run, in the run's channel or the app's."""
    return Cards(client, display, clock, _channel_of(config), poster=Poster(client))


def serve(app: App, cards: Cards, client: WebClient, metrics: Metrics) -> int:
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
        work := CountingPool(int(os.environ.get("BYOI_WORKERS", "2")), thread_name_prefix="work"),
    )
    metrics.watch(StoreSource(app.config, app.store, app.service, app.clock))
    metrics.watch_queue(work.pending)
    health = Health(
        app.store, socket_down_limit=float(os.environ.get("BYOI_SOCKET_DOWN_SECONDS", "60"))
    )
    pages: dict[str, WSGIApp] = {"/healthz": health, "/metrics": metrics.wsgi()}
    bolt = create_app(services, client, os.environ.get("SLACK_SIGNING_SECRET") or None)
    stop = threading.Event()
    threading.Thread(target=_sweep_expiries, args=(app, cards, stop), daemon=True).start()

    def scan(trigger: str) -> None:
        alert_cards.show(app.service.views.scan(app.clock(), trigger).changes)

    schedule = Schedule(app.config, scan)
    schedule.start()
    try:
        if os.environ.get("SLACK_APP_TOKEN"):
            _socket_mode(bolt, client, os.environ["SLACK_APP_TOKEN"], health, pages)
        else:
            _http(wsgi(bolt, pages))
    finally:
        health.stop()
        schedule.stop()
        stop.set()
        app.runner.wait(60)
        cards.stop()
        app.store.close()
    return 0


def _http(application: WSGIApp) -> None:
    from waitress.server import create_server

    port = int(os.environ.get("PORT", "3000"))
    host = os.environ.get("BYOI_HOST", "0.0.0.0")  # noqa: S104 - Slack must reach it
    server = create_server(application, host=host, port=port, threads=WSGI_THREADS)
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    logs.announce(f"byoi: listening on http://{host}:{server.effective_port}/slack/events")
    with contextlib.suppress(KeyboardInterrupt, OSError):
        server.run()


def _side_server(pages: Mapping[str, WSGIApp]) -> Any:
    """/healthz and /metrics for Socket Mode, on $BYOI_METRICS_PORT, else $PORT, else 3000."""
    from waitress.server import create_server

    port = int(os.environ.get("BYOI_METRICS_PORT") or os.environ.get("PORT") or "3000")
    host = os.environ.get("BYOI_HOST", "0.0.0.0")  # noqa: S104 - probes and scrapers reach it
    server = create_server(pages_only(pages), host=host, port=port, threads=2)
    threading.Thread(target=server.run, name="side-server", daemon=True).start()
    logs.announce(f"byoi: /healthz and /metrics on http://{host}:{server.effective_port}")
    return server


def _socket_mode(
    bolt: BoltApp, client: WebClient, app_token: str, health: Health, pages: Mapping[str, WSGIApp]
) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    metrics = client.metrics if isinstance(client, MeteredWebClient) else None
    socket_client = web_client(app_token, client.base_url, metrics)
    handler = SocketModeHandler(bolt, app_token, web_client=socket_client)
    side = _side_server(pages)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    handler.connect()  # type: ignore[no-untyped-call]
    health.watch_socket(handler.client.is_connected)
    logs.announce("byoi: connected to Slack in Socket Mode")
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    handler.close()  # type: ignore[no-untyped-call]
    side.close()
