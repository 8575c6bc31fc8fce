"""pydo, wrapped: one place for calls, retries, paging and error translation.

429 answers are retried after DigitalOcean's ``ratelimit-reset`` time, 5xx answers with
backoff (only for calls that are safe to repeat); everything else becomes the port's error
at once. pydo's own retry policy is off, so these are the only retries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pydo
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from providers.base import ProviderError, ProviderTimeout, Throttled
from providers.digitalocean_codec import error_from


class Unanswered(ProviderError):
    """A 5xx or no answer on a call that must not simply be repeated (it may have taken
    effect)."""


class _Bearer(SansIOHTTPPolicy[Any, Any]):
    """The token as a bearer header. azure-core's token policy refuses plain-HTTP endpoints,
    which emulators use."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.http_request.headers["Authorization"] = self._header


def client(token: str, endpoint: str | None, timeout: float) -> Any:
    return pydo.Client(
        token,
        endpoint=endpoint or "https://api.digitalocean.com",
        retry_total=0,
        authentication_policy=_Bearer(token),
        timeout=max(1, int(timeout)),
        # azure-core's own defaults are 300 s each; ``timeout`` alone does not bound the wait
        # for an answer.
        connection_timeout=min(10.0, timeout),
        read_timeout=timeout,
    )


def _with_status(response: Any, body: Any, headers: Any) -> tuple[int, Any, Any]:
    """pydo's ``cls`` hook: keep the status, since pydo returns many error bodies as values."""
    return int(response.http_response.status_code), body, response.http_response


class _Answer(Exception):
    """An error status pydo returned instead of raising."""

    def __init__(self, status: int, body: Any, response: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        self.headers: Mapping[str, str] = response.headers if response is not None else {}


class _Lost(Exception):
    """A call that got no answer (the connection dropped or was refused): retried when the
    call is repeatable; for a create, the caller looks again before creating (``Unanswered``)."""

    def __init__(self, exc: AzureError) -> None:
        super().__init__(str(exc))
        self.timed_out = isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError)


def _from_exception(exc: HttpResponseError) -> _Answer:
    body: Any = {}
    try:
        text = exc.response.text() if exc.response is not None else ""
        body = json.loads(text) if text else {}
    except ValueError:
        body = {}
    return _Answer(int(exc.status_code or 0), body, exc.response)


def _reset_wait(answer: _Answer, fallback: float) -> float:
    """Seconds until the rate limit resets, from ``ratelimit-reset`` (epoch) or Retry-After."""
    reset = answer.headers.get("ratelimit-reset")
    if reset and reset.isdigit():
        return max(0.0, int(reset) - time.time()) + 0.05
    after = answer.headers.get("retry-after")
    if after and after.isdigit():
        return float(after)
    return fallback


class Api:
    def __init__(self, sdk: Any, *, attempts: int, longest_wait: float) -> None:
        self.sdk = sdk
        self.attempts = max(1, attempts)
        self.longest_wait = longest_wait

    def call(
        self,
        action: str,
        method: Callable[..., Any],
        *args: Any,
        repeatable: bool = True,
        **kwargs: Any,
    ) -> Any:
        """``method(*args, **kwargs)``'s body; retried on 429, and on a 5xx or a dropped
        connection if ``repeatable`` (``Unanswered`` otherwise)."""
        delay = 0.2
        for attempt in range(1, self.attempts + 1):
            try:
                return self._once(method, *args, **kwargs)
            except _Lost as lost:  # no answer at all: a dropped connection, a reset
                if lost.timed_out:  # waited the client's timeout already: not again
                    raise ProviderTimeout(
                        f"{action}: no answer from DigitalOcean in time"
                    ) from lost
                if not repeatable:
                    raise Unanswered(f"{action}: no answer from DigitalOcean ({lost})") from lost
                if attempt == self.attempts:
                    raise ProviderError(f"{action}: no answer from DigitalOcean ({lost})") from lost
                time.sleep(delay)
            except _Answer as answer:
                last = attempt == self.attempts
                if answer.status == 429:
                    wait = _reset_wait(answer, delay)
                    if last or wait > self.longest_wait:
                        raise self._throttled(action, answer, attempt) from answer
                    time.sleep(wait)
                elif answer.status >= 500 and not last:
                    if not repeatable:
                        raise Unanswered(
                            f"{action}: DigitalOcean answered {answer.status}"
                        ) from answer
                    time.sleep(delay)
                else:
                    raise error_from(action, answer.status, answer.body) from answer
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    @staticmethod
    def _once(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            status, body, response = method(*args, cls=_with_status, **kwargs)
        except HttpResponseError as exc:
            raise _from_exception(exc) from exc
        except AzureError as exc:
            raise _Lost(exc) from exc
        if status >= 400:
            raise _Answer(status, body, response)
        return body if body is not None else {}

    def _throttled(self, action: str, answer: _Answer, attempts: int) -> Throttled:
        reset = answer.headers.get("ratelimit-reset", "")
        when = (
            datetime.fromtimestamp(int(reset), UTC).strftime("%H:%M:%S UTC")
            if reset.isdigit()
            else "later"
        )
        return Throttled(
            f"{action}: DigitalOcean's API rate limit is used up until {when} "
            f"(tried {attempts} time(s)); try again then"
        )

    def all(
        self, action: str, method: Callable[..., Any], key: str, *args: Any, **kwargs: Any
    ) -> list[Any]:
        """Every item of a paged listing."""
        items: list[Any] = []
        page = 1
        while True:
            data = self.call(action, method, *args, per_page=200, page=page, **kwargs)
            items.extend(data.get(key) or [])
            if not ((data.get("links") or {}).get("pages") or {}).get("next"):
                return items
            page += 1
