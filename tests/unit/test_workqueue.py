"""The post-ack work queue: on shutdown every dropped caller is told, a slow reply or not."""

from __future__ import annotations

import threading
import time

from bot.slack.workqueue import WorkQueue


def test_callers_dropped_at_shutdown_are_told_at_once_not_one_after_another() -> None:
    queue = WorkQueue(workers=1, limit=10)
    busy = threading.Event()
    release = threading.Event()

    def first() -> None:
        busy.set()
        release.wait(10)

    queue.submit(first, None, "the first")
    assert busy.wait(5)
    told: list[str] = []

    def slow_reply(text: str) -> None:
        time.sleep(1.0)  # a response_url that takes a second to answer
        told.append(text)

    for n in range(4):
        assert queue.submit(lambda: None, slow_reply, f"request {n}")

    started = time.monotonic()
    dropped = queue.stop(timeout=2.5)
    release.set()

    assert dropped == 4
    assert sorted(told) == sorted(
        f":warning: byoi is restarting and did not carry out request {n}. Nothing was changed; "
        "try again in a minute."
        for n in range(4)
    )
    assert time.monotonic() - started < 3.0
