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
from typing import TypeVar

T = TypeVar("T")
SEEDS = 16


def fan_out(work: Callable[[T], object], items: Sequence[T], limit: int, name: str) -> None:
    """Call ``work`` on every item, at most ``limit`` at once; return when all are done.

    Like ``ThreadPoolExecutor.map``: every item is worked on even if one raises, and then the
    first exception is raised here.
    """
    pending: queue.SimpleQueue[T] = queue.SimpleQueue()
    for item in items:
        pending.put(item)
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []
    lock = threading.Lock()

    def drain() -> None:
        while True:
            try:
                item = pending.get_nowait()
            except queue.Empty:
                return
            try:
                work(item)
            except BaseException as exc:  # noqa: BLE001 - raised by fan_out, as map() would
                errors.append(exc)

    def start(target: Callable[..., None], *args: object) -> None:
        with lock:
            # Daemon: Python keeps no shutdown lock for it, whose upkeep on every start costs
            # O(threads); the caller still joins every one of them.
            thread = threading.Thread(
                target=target, args=args, name=f"{name}-{len(threads)}", daemon=True
            )
            threads.append(thread)
        thread.start()

    def seed(share: int) -> None:
        for _ in range(share):
            start(drain)
        drain()

    count = min(limit, len(items))
    seeds = min(count, SEEDS)
    for index in range(seeds):
        start(seed, (count - seeds) // seeds + (index < (count - seeds) % seeds))
    # Seeds come first and start their share before working: once they are joined, the list
    # is complete.
    joined = 0
    while True:
        with lock:
            if joined == len(threads):
                break
            thread = threads[joined]
        thread.join()
        joined += 1
    if errors:
        raise errors[0]
