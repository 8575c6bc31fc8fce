"""Replies to a request's ``response_url`` over kept-alive connections.

Bolt's ``respond`` opens a new connection (and, against Slack, a new TLS session) for every
reply, through urllib: in ``bench/ack_latency.py`` that was over a third of byoi's CPU at 50
requests in flight, taken from the acks of the requests behind them. Here one connection pool
(urllib3) serves every reply; a Bolt middleware hands each listener a ``Respond`` that uses it,
so listeners keep Bolt's signature and message format.

A reply that cannot be delivered is logged in one line and dropped: there is nobody else to
tell, and saying "something went wrong" through the same URL would only fail again (or, for a
slow one, arrive as a second reply).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import urllib3
from slack_bolt import BoltContext, BoltResponse, Respond
from slack_bolt.context.respond.internals import _build_message
from slack_sdk.proxy_env_variable_loader import load_http_proxy_from_env
from slack_sdk.webhook import WebhookResponse
from urllib3.exceptions import HTTPError, MaxRetryError, ProtocolError

log = logging.getLogger(__name__)

TIMEOUT = urllib3.Timeout(connect=5.0, read=10.0)
# A reply is a post: only a connection that could not be made is tried again here.
RETRIES = urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, backoff_factor=0.2)
KEPT = 32
"""Connections kept open per host, at least: replies come from the post-ack workers and, when
byoi is busy, from the threads that say so."""


def pool(workers: int = KEPT) -> urllib3.PoolManager:
    """Connections for replies, ``KEPT`` (or one per post-ack worker, if more) kept open;
    through the proxy in HTTPS_PROXY/HTTP_PROXY as the Slack SDK reads it (``host:port`` means
    http, a user and password in it are sent to the proxy)."""
    size = max(KEPT, workers)
    proxy = load_http_proxy_from_env()
    if not proxy:
        return urllib3.PoolManager(maxsize=size, timeout=TIMEOUT, retries=RETRIES)
    try:
        url = urllib3.util.parse_url(proxy if "://" in proxy else f"http://{proxy}")
        # Written percent-encoded in the URL (a password with @ or :), sent decoded.
        auth = unquote(url.auth) if url.auth else None
        headers = urllib3.make_headers(proxy_basic_auth=auth) if auth else None
        bare = url._replace(auth=None).url
        return urllib3.ProxyManager(
            bare, proxy_headers=headers, maxsize=size, timeout=TIMEOUT, retries=RETRIES
        )
    except ValueError as exc:  # not a URL, or a scheme urllib3 cannot proxy through
        shown = proxy.rsplit("@", 1)[-1]  # never a password in the log
        log.error("replies go without a proxy: %s is not a proxy byoi can use (%s)", shown, exc)
        return urllib3.PoolManager(maxsize=size, timeout=TIMEOUT, retries=RETRIES)


class PooledRespond(Respond):
    """Bolt's ``respond`` (same arguments, same message), sent through ``connections``."""

    def __init__(self, response_url: str | None, connections: urllib3.PoolManager) -> None:
        super().__init__(response_url=response_url)
        self.connections = connections

    def __call__(  # type: ignore[override] # only what byoi passes; Bolt builds the message
        self,
        text: str = "",
        blocks: Any = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
    ) -> WebhookResponse:
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        message = _build_message(
            text=text,
            blocks=blocks,
            response_type=response_type,
            replace_original=replace_original,
            delete_original=delete_original,
        )
        body = json.dumps(message).encode()
        if not self.response_url.startswith(("https://", "http://")):
            log.warning("could not deliver a reply: %r is no response_url", self.response_url[:100])
            return self._answer(0, "")
        try:
            status, answer = self._send(self.response_url, body)
        except HTTPError as exc:
            log.warning("could not deliver a reply to Slack's response_url: %s", _why(exc))
            return self._answer(0, "")
        if status >= 300:
            log.warning("Slack refused a reply (HTTP %s: %s)", status, answer[:100])
        return self._answer(status, answer)

    def _answer(self, status: int, body: str) -> WebhookResponse:
        """What Bolt's respond returns; status 0 when nothing was delivered."""
        return WebhookResponse(
            url=str(self.response_url), status_code=status, body=body, headers={}
        )

    def _send(self, url: str, body: bytes) -> tuple[int, str]:
        """POST ``body``; a kept connection the server closed meanwhile (it answers nothing)
        is replaced once, as the Slack SDK retries a reset connection."""
        headers = {"Content-Type": "application/json;charset=utf-8"}
        try:
            answer = self.connections.request("POST", url, body=body, headers=headers)
        except (MaxRetryError, ProtocolError) as exc:
            # urllib3 raises a POST's read error as it is, other errors wrapped in its retries.
            if not isinstance(exc.reason if isinstance(exc, MaxRetryError) else exc, ProtocolError):
                raise
            answer = self.connections.request("POST", url, body=body, headers=headers)
        return answer.status, answer.data.decode("utf-8", "replace")


def _why(exc: HTTPError) -> str:
    """The cause in a few words (urllib3 wraps it in its retry error)."""
    reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
    return f"{type(reason).__name__}: {str(reason)[:200]}"


def middleware(
    connections: urllib3.PoolManager,
) -> Callable[[BoltContext, Callable[[], BoltResponse]], BoltResponse]:
    """A Bolt middleware giving every listener with a response_url a ``PooledRespond``."""

    # Bolt injects a middleware's arguments by name: ``next`` must be called so.
    def pooled_respond(context: BoltContext, next: Callable[[], BoltResponse]) -> BoltResponse:
        if context.response_url is not None:  # an empty one fails in PooledRespond, in one line
            context["respond"] = PooledRespond(context.response_url, connections)
        return next()

    return pooled_respond
