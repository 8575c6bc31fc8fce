"""Slack Web API calls, retries and 429s, counted for bot/metrics.py.

A call is one Web API method call as byoi makes it (its retries inside); a retry is one more
request sent by a retry handler; a 429 is every rate-limited response, retried or not.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import Counter
from slack_sdk import WebClient
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.slack_response import SlackResponse

from bot.metrics import Metrics

_METHOD = re.compile(r"^[a-zA-Z][a-zA-Z.]{0,60}$")


def method_of(url_or_method: str) -> str:
    """A Slack method name for a label; anything unexpected becomes `other`."""
    method = url_or_method.rsplit("/", 1)[-1].split("?", 1)[0]
    return method if _METHOD.match(method) else "other"


class MeteredWebClient(WebClient):
    """A WebClient that counts each method call by outcome (ok, or the Slack error class)."""

    metrics: Metrics | None = None

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        try:
            response = super().api_call(api_method, **kwargs)
        except Exception:
            self._count(api_method, "error")
            raise
        self._count(api_method, "ok")
        return response

    def _count(self, api_method: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.slack_calls.labels(method_of(api_method), outcome).inc()


class RateLimitWatcher(RetryHandler):
    """First in the handler list: sees every response, counts 429s, never retries itself."""

    def __init__(self, rate_limited: Counter) -> None:
        super().__init__(max_retry_count=0)
        self.rate_limited = rate_limited

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            self.rate_limited.labels(method_of(request.url)).inc()
        return False


class CountedRetries(RetryHandler):
    """Wraps a retry handler and counts each retry it decides on, with ``reason``.

    Each attempt (its keyword-only state, request, response and error) is passed through as
    the inner handler takes it."""

    def __init__(self, inner: RetryHandler, reason: str, retries: Counter) -> None:
        super().__init__(inner.max_retry_count, inner.interval_calculator)
        self.inner = inner
        self.reason = reason
        self.retries = retries

    def can_retry(self, **attempt: Any) -> bool:
        return self.inner.can_retry(**attempt)

    def prepare_for_next_attempt(self, **attempt: Any) -> None:
        request: HttpRequest = attempt["request"]
        self.retries.labels(method_of(request.url), self.reason).inc()
        self.inner.prepare_for_next_attempt(**attempt)
