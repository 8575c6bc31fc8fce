"""Group commit: writers that arrive while a transaction is being committed share the next one.

A large parallel run has every server reach a step boundary at once; one ``BEGIN IMMEDIATE``
each queued hundreds of transactions behind one lock. Here each writer queues its change; one
writer at a time leads, committing everything queued in one transaction, then wakes the writers
it committed for and hands the lead to the next one waiting. Every writer still returns only
once its own change is committed, so what a caller does next (a provider call) always comes
after the record of it; and each waits on its own lock, so a commit wakes only its writers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _held() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class _Ticket(Generic[T, R]):
    change: T
    wake: threading.Lock = field(default_factory=_held)
    done: bool = False
    result: R | None = None
    error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    def __init__(self, lock: threading.RLock, commit: Callable[[Sequence[T]], Sequence[R]]) -> None:
        """``commit`` writes its changes in one transaction and returns a result for each;
        ``lock`` serialises it with the store's other transactions."""
        self._lock = lock
        self._commit = commit
        self._queue: list[_Ticket[T, R]] = []
        self._leading = False
        self._queue_lock = threading.Lock()

    def write(self, change: T) -> R:
        """Return once ``change`` is committed (possibly by another writer's transaction)."""
        ticket: _Ticket[T, R] = _Ticket(change)
        with self._queue_lock:
            self._queue.append(ticket)
            lead = not self._leading
            self._leading = True
        if not lead:
            ticket.wake.acquire()  # released once committed, or to hand this writer the lead
        if not ticket.done:
            self._lead()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value] # set with done

    def _lead(self) -> None:
        batch: list[_Ticket[T, R]] = []
        try:
            with self._lock:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit_batch(batch)
        finally:
            for ticket in batch:
                ticket.done = True
                ticket.wake.release()
            with self._queue_lock:
                if self._queue:
                    self._queue[0].wake.release()  # not done: it leads the next batch
                else:
                    self._leading = False

    def _commit_batch(self, batch: list[_Ticket[T, R]]) -> None:
        try:
            for ticket, result in zip(batch, self._commit([t.change for t in batch]), strict=True):
                ticket.result = result
        except Exception as exc:  # noqa: BLE001 - handed to its writer, who raises it
            if len(batch) == 1:
                batch[0].error = exc
                return
            # One bad change must not fail the others: commit each alone; each keeps its error.
            for ticket in batch:
                try:
                    (ticket.result,) = self._commit([ticket.change])
                except Exception as exc:  # noqa: BLE001 - handed to its writer, who raises it
                    ticket.error = exc
