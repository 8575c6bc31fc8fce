"""The work that follows an ack: a few workers and a bounded queue.

Past the bound a request is refused at once (the caller hears byoi is busy) instead of being
done minutes later. On shutdown the queue is dropped: every caller whose request was acked but
not carried out is told so, and the requests in progress get until the deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

log = logging.getLogger(__name__)
Tell = Callable[[str], object]

BUSY = "byoi is busy, try again in a moment."
TELLERS = 8
"""Callers told at once on shutdown (each reply is a call to Slack's response_url)."""
NOT_DONE = (
    ":warning: byoi is restarting and did not carry out {what}. Nothing was changed; "
    "try again in a minute."
)
MAYBE_DONE = (
    ":warning: byoi is restarting while {what} was being carried out; "
    "check `/byoi status` before trying again."
)


@dataclass(frozen=True)
class Job:
    work: Callable[[], None]
    tell: Tell | None
    """How to reach the caller (an ephemeral reply), if anyone is waiting."""
    what: str
    """The request in words, e.g. "`/byoi scale web 3`"."""


class WorkQueue:
    def __init__(self, workers: int = 2, limit: int = 100, name: str = "work") -> None:
        self.limit = limit
        self._queue: deque[Job] = deque()
        self._running: set[Job] = set()
        self._cv = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._worker, name=f"{name}-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    def submit(self, work: Callable[[], None], tell: Tell | None = None, what: str = "") -> bool:
        """Queue ``work``; False (and nothing queued) when the queue is full or stopping."""
        with self._cv:
            if self._stopping or len(self._queue) >= self.limit:
                return False
            self._queue.append(Job(work, tell, what or "your request"))
            self._cv.notify()
            return True

    def pending(self) -> int:
        """Requests queued or being carried out (a gauge in bot/metrics.py)."""
        with self._cv:
            return len(self._queue) + len(self._running)

    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                self._running.add(job)
            try:
                job.work()
            except Exception:  # the work is guarded; a worker must survive anyway
                log.exception("post-ack work failed")
            finally:
                with self._cv:
                    self._running.discard(job)
                    self._cv.notify_all()

    def stop(self, timeout: float) -> int:
        """Drop what has not started (telling each caller), give what runs ``timeout``
        seconds, and tell the callers of what still runs then; returns how many were dropped."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            self._cv.notify_all()
        if dropped:
            log.warning("shutting down: %d acked request(s) not carried out", len(dropped))
        self._tell_all(dropped, NOT_DONE, deadline)
        with self._cv:
            while self._running and time.monotonic() < deadline:
                self._cv.wait(max(0.0, min(0.2, deadline - time.monotonic())))
            unfinished = list(self._running)
        self._tell_all(unfinished, MAYBE_DONE, deadline + 1.0)
        return len(dropped)

    @staticmethod
    def _tell_all(jobs: list[Job], template: str, deadline: float) -> None:
        """Best effort, and never past the deadline: Slack may be the thing that is down.
        The callers are told at the same time (a few at once), so that one slow reply does
        not use up the time of the others."""

        def tell(job: Job) -> None:
            if job.tell is None or time.monotonic() >= deadline:
                return
            try:
                job.tell(template.format(what=job.what))
            except Exception:  # noqa: BLE001 - best effort; Slack may be down
                log.warning("could not tell a caller that %s was not carried out", job.what)

        told = [job for job in jobs if job.tell is not None]
        if not told:
            return
        tellers = ThreadPoolExecutor(min(TELLERS, len(told)), thread_name_prefix="tell-callers")
        try:
            done = [tellers.submit(tell, job) for job in told]
            wait(done, timeout=max(0.0, deadline - time.monotonic()))
        finally:
            tellers.shutdown(wait=False, cancel_futures=True)
