"""How a parallel run's new servers are split into cohorts, and how the cohorts take turns.

A cohort's step boundary (its transaction, each server's result taken) is the interpreter's work and
grows with the cohort; while it runs, none of that cohort's servers has a call in flight. So a run's
servers go in cohorts of at most ``COHORT``, several at once within ``max_parallel``, and each
cohort stores its first step only once the one before has stored its own and gone on to its first
call: from then on each one's boundaries fall while the others wait on the cloud
(docs/performance.md, tenth pass). A larger run than ``max_parallel`` starts its next cohort as soon
as one ends.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
COHORT = 200
"""Servers per cohort at most: each provider call takes a cohort's servers."""


def sizes(servers: int, max_parallel: int) -> tuple[int, int]:
    """How many servers each cohort takes and how many cohorts go at once, for ``servers`` at
    most ``max_parallel`` at a time: no more than ``COHORT`` each, and never more than
    ``max_parallel`` in flight (250 servers at most 201 at a time go as 100, 100, then 50)."""
    in_flight = max(1, min(servers, max_parallel))
    at_once = -(-in_flight // COHORT)
    if servers <= max_parallel:  # all at once, in equal cohorts
        return -(-in_flight // at_once), at_once
    return in_flight // at_once, at_once


class Turn:
    """The right to prepare a first call: one cohort at a time, so cohorts start apart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextmanager
    def taken(self) -> Iterator[Callable[[], None]]:
        """Wait for the turn and hold it; give it up by calling what this yields (once the first
        call is about to go), or on leaving, whatever happens."""
        self._lock.acquire()
        held = True

        def give_up() -> None:
            nonlocal held
            if held:
                held = False
                self._lock.release()

        try:
            yield give_up
        finally:
            give_up()


class Waiting(Generic[T]):
    """The cohorts not begun yet, taken in order by the threads of a run."""

    def __init__(self, items: Sequence[T], size: int) -> None:
        self._cohorts = deque(list(items[at : at + size]) for at in range(0, len(items), size))
        self._lock = threading.Lock()

    def next(self) -> list[T] | None:
        with self._lock:
            return self._cohorts.popleft() if self._cohorts else None

    def rest(self) -> list[T]:
        """Every item not begun, taken at once (a cancel skips them together)."""
        with self._lock:
            rest = [item for cohort in self._cohorts for item in cohort]
            self._cohorts.clear()
            return rest
