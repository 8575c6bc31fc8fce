"""`byoi serve`: the Slack bot over HTTP (waitress) or Socket Mode, once Slack answers.

Both modes serve GET /healthz and GET /metrics (Socket Mode on a small side server) from the
start; a shutdown runs under one deadline (bot/slack/lifecycle.py).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from slack_bolt import App as BoltApp
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot import logs
from bot.health import Health, Readiness
from bot.metrics import Metrics, ScrapeSource
from bot.slack.admission import Refusal, admit, envelope_problem
from bot.slack.alertcards import AlertCards
from bot.slack.app import Directory, ListenerContext, create_app
from bot.slack.cards import Cards, Poster
from bot.slack.lifecycle import (
    Deadline,
    close_socket_mode,
    exit_now,
    run_in_background,
    shut_down_aside,
    wait_for_slack,
    wait_for_stop,
)
from bot.slack.metered import CountedRetries, MeteredWebClient, RateLimitWatcher
from bot.slack.schedule import Schedule
from bot.slack.workqueue import WorkQueue
from bot.wiring import App
from pipeline.config.model import Config, ThreadUpdates
from pipeline.domain.models import Run
from pipeline.execution import recovery
from pipeline.ports import Clock
from pipeline.services.display import Display

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

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
    token: str, base_url: str | None = None, metrics: Metrics | None = None, timeout: float = 10.0
) -> WebClient:
    """A Web API client with an explicit timeout (connect and read) that retries 429 (after
    Retry-After), connection errors and 5xx; with ``metrics``, its calls, retries and 429s
    are counted."""
    kwargs: dict[str, Any] = {"timeout": int(timeout)}
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


def _starting(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "application/json")])
    return [b'{"error": "byoi is starting"}']


def _refuse(start_response: StartResponse, refusal: Refusal) -> Iterable[bytes]:
    log.warning("refused a request: %s", refusal.reason)
    start_response(refusal.status, [("Content-Type", "application/json")])
    return [refusal.body()]


def wsgi(
    bolt: BoltApp | Callable[[], BoltApp | None],
    pages: Mapping[str, WSGIApp] | None = None,
    signing_secret: str | None = None,
) -> WSGIApp:
    """Slack's requests at /slack/events (admitted first: see bot.slack.admission), and the GET
    ``pages`` (/healthz always answers); any other path is 404. ``bolt`` may be a function that
    gives the app once it exists (Slack answered at start): until then Slack's requests get 503."""
    handlers: list[SlackRequestHandler] = []
    replays = ReplayGuard()
    gets = {"/healthz": _ok, **(pages or {})}

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        page = gets.get(str(environ.get("PATH_INFO")))
        if page is not None and environ.get("REQUEST_METHOD") == "GET":
            return page(environ, start_response)
        if environ.get("PATH_INFO") != "/slack/events":
            return _refuse(start_response, Refusal("404 Not Found", "not found"))
        refusal = admit(environ, signing_secret)
        if refusal is not None:
            return _refuse(start_response, refusal)
        signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", ""))
        if signature and not replays.first_time(signature):
            return _refuse(start_response, Refusal("401 Unauthorized", "replayed request"))
        if not handlers:
            app = bolt if isinstance(bolt, BoltApp) else bolt()
            if app is None:
                return _starting(environ, start_response)
            handlers.append(SlackRequestHandler(app))
        return handlers[0](environ, start_response)

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
    return Cards(
        client,
        display,
        clock,
        _channel_of(config),
        poster=Poster(client),
        thread_updates_of=_thread_updates_of(config),
    )


def serve(
    app: App, cards: Cards, client: WebClient, metrics: Metrics, stopping: threading.Event
) -> int:
    """Answer Slack until SIGTERM or SIGINT; ``app`` is built and recovered, ``cards`` is its
    notifier. Requests are taken once Slack answers (/healthz says what byoi waits for until
    then); a shutdown runs under one deadline, ``BYOI_SHUTDOWN_SECONDS``. ``stopping`` is set
    by SIGTERM or SIGINT (``handle_signals``), also one that came during start-up."""
    cards.start()
    services = _services(app, cards, client)
    metrics.watch(ScrapeSource(app.config, app.display, app.service, app.clock))
    metrics.watch_queue(services.work.pending)
    readiness = Readiness()
    health = Health(
        app.store,
        socket_down_limit=float(os.environ.get("BYOI_SOCKET_DOWN_SECONDS", "60")),
        readiness=readiness,
    )
    schedule = Schedule(app.config, lambda trigger: _scan(app, services.alert_cards, trigger))
    front = _Front(os.environ.get("SLACK_APP_TOKEN") or None, health)
    front.listen({"/healthz": health, "/metrics": metrics.wsgi()})

    def start() -> None:
        log.info("re-queued %d run card(s) behind the store", cards.resync())
        services.alert_cards.resync()
        every = float(os.environ.get("BYOI_HOUSEKEEPING_SECONDS", "15"))
        run_in_background(
            "housekeeping",
            lambda: _housekeeping(app, cards, services.alert_cards, stopping, every),
        )
        schedule.start()
        if not wait_for_slack(client, stopping, readiness):
            return
        bolt = create_app(services, client, os.environ.get("SLACK_SIGNING_SECRET") or None)
        front.connect(bolt, client)
        settled()
        readiness.ready.set()

    run_in_background("start", start)
    wait_for_stop(stopping)
    deadline = Deadline(float(os.environ.get("BYOI_SHUTDOWN_SECONDS", "25")))
    shut_down_aside(lambda: _shut_down(app, front, schedule, services, cards, deadline))
    return 1  # the shutdown raised (logged) instead of ending the process


def settled() -> None:
    """Start-up is over: what it loaded (libraries, configuration, the app) lives as long as the
    process. Frozen, it is left out of later full garbage collections, which would otherwise
    walk it again whenever a large run allocates (one such pass cost a 1,000-server run
    35-75 ms, docs/performance.md)."""
    gc.collect()
    gc.freeze()


def _services(app: App, cards: Cards, client: WebClient) -> ListenerContext:
    """What the listeners use: the service, cards, the directory and the post-ack workers."""
    work = WorkQueue(
        int(os.environ.get("BYOI_WORKERS", "2")), int(os.environ.get("BYOI_QUEUE", "100"))
    )
    return ListenerContext(
        app.service,
        app.display,
        cards,
        Directory.for_config(client, app.config),
        app.clock,
        AlertCards(cards.post, app.display, app.clock),
        work,
    )


def _scan(app: App, alert_cards: AlertCards, trigger: str) -> None:
    alert_cards.show(app.service.views.scan(app.clock(), trigger).changes)


def _housekeeping(
    app: App, cards: Cards, alert_cards: AlertCards, stop: threading.Event, every: float = 15.0
) -> None:
    """Expire pending approvals, show alert cards that fell behind (Slack was down), and carry
    on runs that another byoi process sharing the database left (it was stopping when this
    one started)."""
    while not stop.wait(every):
        try:
            for run in app.service.expire_due(app.clock()):
                cards.run_changed(run)
            alert_cards.resync()
            taken = recovery.take_over(app.store, app.runner, app.clock())
            if taken:
                log.warning("carrying on run(s) %s left by another byoi process", taken)
        except Exception:
            log.exception("housekeeping failed")


def _shut_down(
    app: App,
    front: _Front,
    schedule: Schedule,
    services: ListenerContext,
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
    """How Slack reaches byoi: HTTP (waitress), or Socket Mode with a small side server for
    /healthz and /metrics."""

    def __init__(self, socket_token: str | None, health: Health) -> None:
        self.socket_token = socket_token
        self.health = health
        self.bolt: BoltApp | None = None
        self._server: Any = None
        self._socket: Any = None

    def listen(self, pages: Mapping[str, WSGIApp]) -> None:
        """Serve at once: /healthz says what byoi waits for until Slack answers."""
        from waitress.server import create_server

        host = os.environ.get("BYOI_HOST", "0.0.0.0")  # noqa: S104 - Slack and probes reach it
        if self.socket_token is None:
            port = int(os.environ.get("PORT", "3000"))
            secret = os.environ.get("SLACK_SIGNING_SECRET") or None
            application = wsgi(lambda: self.bolt, pages, secret)
            self._server = create_server(application, host=host, port=port, threads=WSGI_THREADS)
            url = f"http://{host}:{self._server.effective_port}/slack/events"
            logs.announce(f"byoi: listening on {url}")
        else:
            # /healthz and /metrics for Socket Mode, on $BYOI_METRICS_PORT, else $PORT, else 3000
            port = int(os.environ.get("BYOI_METRICS_PORT") or os.environ.get("PORT") or "3000")
            self._server = create_server(pages_only(pages), host=host, port=port, threads=2)
            url = f"http://{host}:{self._server.effective_port}"
            logs.announce(f"byoi: /healthz and /metrics on {url}")
        run_in_background("http", self._serve_http)

    def _serve_http(self) -> None:
        with contextlib.suppress(OSError):
            self._server.run()

    def connect(self, bolt: BoltApp, client: WebClient) -> None:
        self.bolt = bolt
        if self.socket_token is None:
            return
        metrics = client.metrics if isinstance(client, MeteredWebClient) else None
        socket_client = web_client(self.socket_token, client.base_url, metrics)
        handler = _admitting_handler()
        self._socket = handler(bolt, self.socket_token, web_client=socket_client)
        self._socket.connect()
        self.health.watch_socket(self._socket.client.is_connected)
        logs.announce("byoi: connected to Slack in Socket Mode")

    def close(self) -> None:
        """Stop taking requests: close the WebSocket properly, then the HTTP server."""
        self.health.stop()
        if self._socket is not None:
            close_socket_mode(self._socket)
        if self._server is not None:
            self._server.close()


def _admitting_handler() -> type[SocketModeHandler]:
    """Bolt's Socket Mode handler that acknowledges and drops envelopes Slack would never send,
    instead of Bolt failing on them unacknowledged (and Slack sending them again)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.socket_mode import SocketModeClient
    from slack_sdk.socket_mode.request import SocketModeRequest
    from slack_sdk.socket_mode.response import SocketModeResponse

    class AdmittingHandler(SocketModeHandler):
        def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
            problem = envelope_problem(str(req.type), req.payload)
            if problem is None:
                super().handle(client, req)
                return
            log.warning("dropped a Socket Mode envelope: %s", problem)
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    return AdmittingHandler
