"""Run one function over many items on many threads, starting the threads quickly.

``Thread.start`` waits until the new thread has been scheduled; on a busy two-core machine that
made starting 1,000 threads one after another take most of a second (a 1,000-server run's last
server began its launch 1.5 s after its first). Here a few seed threads start the rest between
them, then every thread takes items from one queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
SEEDS = 16


def fan_out(work: Callable[[T], object], items: Sequence[T], limit: int, name: str) -> None:
    """Call ``work`` on every item, at most ``limit`` at once; return when all are done.

    Like ``ThreadPoolExecutor.map``: every item is worked on even if one raises, and then the
    first exception is raised here.
    """
    fan = _FanOut(work, items, name)
    count = min(limit, len(items))
    seeds = min(count, SEEDS)
    for index in range(seeds):
        fan.start(fan.seed, (count - seeds) // seeds + (index < (count - seeds) % seeds))
    fan.join()
    if fan.errors:
        raise fan.errors[0]


class _FanOut(Generic[T]):
    def __init__(self, work: Callable[[T], object], items: Sequence[T], name: str) -> None:
        self.work = work
        self.name = name
        self.pending: queue.SimpleQueue[T] = queue.SimpleQueue()
        for item in items:
            self.pending.put(item)
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def drain(self) -> None:
        while True:
            try:
                item = self.pending.get_nowait()
            except queue.Empty:
                return
            try:
                self.work(item)
            except BaseException as exc:  # noqa: BLE001 - raised by fan_out, as map() would
                self.errors.append(exc)

    def start(self, target: Callable[..., None], *args: object) -> None:
        with self.lock:
            # Daemon: Python keeps no shutdown lock for it, whose upkeep on every start costs
            # O(threads); the caller still joins every one of them.
            thread = threading.Thread(
                target=target, args=args, name=f"{self.name}-{len(self.threads)}", daemon=True
            )
            self.threads.append(thread)
        thread.start()

    def seed(self, share: int) -> None:
        for _ in range(share):
            self.start(self.drain)
        self.drain()

    def join(self) -> None:
        """Join every thread. Seeds come first and start their share before working: once
        they are joined, the list is complete."""
        joined = 0
        while True:
            with self.lock:
                if joined == len(self.threads):
                    return
                thread = self.threads[joined]
            thread.join()
            joined += 1
