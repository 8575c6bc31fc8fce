"""Calls for many servers to an API that takes one server per request: sent a few at a time,
then waited for in rounds, so that a thousand servers need a few threads, not a thousand.
Each adapter passes its ``Gate``: however many of its calls for many go at once (a run's
cohorts, several runs), its API has at most ``CALLS`` requests in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from providers.base import ProviderError, ProviderTimeout, each

T = TypeVar("T")
R = TypeVar("R")
CALLS = 8
"""Requests made at once for a call for many servers (clouds' APIs throttle bursts)."""


class Gate:
    """The requests one API client has in flight: at most ``size`` at once."""

    def __init__(self, size: int = CALLS) -> None:
        self._slots = threading.BoundedSemaphore(size)

    def through(self, call: Callable[[T], R]) -> Callable[[T], R]:
        """``call``, waiting for a free slot first."""

        def gated(item: T) -> R:
            with self._slots:
                return call(item)

        return gated


def pooled(call: Callable[[T], R], items: Sequence[T], gate: Gate) -> list[R | ProviderError]:
    """``call`` on every item, ``CALLS`` at a time (and no more than ``gate`` lets through), in
    order; an item's error is its own."""
    gated = gate.through(call)
    if len(items) <= 1:
        return each(gated, items)
    with ThreadPoolExecutor(max_workers=min(CALLS, len(items))) as pool:
        return [o for chunk in pool.map(lambda item: each(gated, [item]), items) for o in chunk]


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for first in range(0, len(items), size):
        yield list(items[first : first + size])


def rounds(
    ask: Callable[[T], R | None],
    items: Sequence[T],
    *,
    late: Callable[[T, float], ProviderError | None],
    poll_seconds: float,
    gate: Gate,
) -> list[R | ProviderError]:
    """Ask after every item until each has an answer: ``ask`` returns None while the item is
    not done, and ``late`` (given the seconds since the first round) the error of one waited
    for too long. Each round asks the items still waiting, ``CALLS`` at a time; a question that
    timed out is asked again the next round (``ask`` only reads)."""
    begun = time.monotonic()
    answers: dict[int, R | ProviderError] = {}

    def asked(n: int) -> R | None:
        try:
            return ask(items[n])
        except ProviderTimeout:  # a question that got no answer in time: asked again
            return None

    while True:
        asking = [n for n in range(len(items)) if n not in answers]
        found = pooled(asked, asking, gate)
        waited = time.monotonic() - begun
        for n, answer in zip(asking, found, strict=True):
            if answer is None:
                answer = late(items[n], waited)
            if answer is not None:
                answers[n] = answer
        if len(answers) == len(items):
            return [answers[n] for n in range(len(items))]
        time.sleep(poll_seconds)
