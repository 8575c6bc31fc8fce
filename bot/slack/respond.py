"""Replies to a request's ``response_url`` over kept-alive connections.

Bolt's ``respond`` opens a new connection (and, against Slack, a new TLS session) for every
reply, through urllib: in ``bench/ack_latency.py`` that was over a third of byoi's CPU at 50
requests in flight, taken from the acks of the requests behind them. Here one connection pool
(urllib3) serves every reply; a Bolt middleware hands each listener a ``Respond`` that uses it,
so listeners keep Bolt's signature and message format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import urllib3
from slack_bolt import BoltContext, BoltResponse, Respond
from slack_bolt.context.respond.internals import _build_message
from slack_sdk.proxy_env_variable_loader import load_http_proxy_from_env
from slack_sdk.webhook import WebhookResponse

TIMEOUT = urllib3.Timeout(connect=5.0, read=10.0)
# A reply is a post: only a connection that was never made is tried again (no duplicate).
RETRIES = urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.2)


KEPT = 8
"""Connections kept open per host: replies come from a few post-ack workers at a time."""


def pool() -> urllib3.PoolManager:
    """Connections for replies; through the proxy in HTTPS_PROXY/HTTP_PROXY, as the Slack SDK
    would use."""
    proxy = load_http_proxy_from_env()
    if proxy:
        return urllib3.ProxyManager(proxy, maxsize=KEPT, timeout=TIMEOUT, retries=RETRIES)
    return urllib3.PoolManager(maxsize=KEPT, timeout=TIMEOUT, retries=RETRIES)


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
        answer = self.connections.request(
            "POST",
            self.response_url,
            body=json.dumps(message).encode(),
            headers={"Content-Type": "application/json;charset=utf-8"},
        )
        return WebhookResponse(
            url=self.response_url,
            status_code=answer.status,
            body=answer.data.decode("utf-8", "replace"),
            headers=dict(answer.headers),
        )


def middleware(
    connections: urllib3.PoolManager,
) -> Callable[[BoltContext, Callable[[], BoltResponse]], BoltResponse]:
    """A Bolt middleware giving every listener with a response_url a ``PooledRespond``."""

    # Bolt injects a middleware's arguments by name: ``next`` must be called so.
    def pooled_respond(context: BoltContext, next: Callable[[], BoltResponse]) -> BoltResponse:
        if context.response_url:
            context["respond"] = PooledRespond(context.response_url, connections)
        return next()

    return pooled_respond
