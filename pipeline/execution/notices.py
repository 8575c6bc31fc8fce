"""Telling the notifier that runs changed, at once or coalesced.

With no interval every change is delivered as it happens (the shell prints each step). A server
sets an interval: a run's changes are then delivered at most once per interval, by one thread,
so a large fleet is not re-read from the store on every step of every server.
"""

from __future__ import annotations

import logging
import threading
import time

from pipeline.ports import Notifier
from pipeline.state.store import Store

log = logging.getLogger(__name__)


class RunNotices:
    def __init__(self, store: Store, notifier: Notifier, interval: float) -> None:
        self.store = store
        self.notifier = notifier
        self.interval = interval
        self._dirty: set[int] = set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._deliver_lock = threading.Lock()

    def changed(self, run_id: int) -> None:
        """Run ``run_id`` changed: tell the notifier now, or within the interval."""
        if self.interval <= 0:
            self._deliver(run_id)
            return
        with self._lock:
            self._dirty.add(run_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="run-notifier", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Deliver what is waiting now."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for run_id in sorted(dirty):
            self._deliver(run_id)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                if not self._dirty:
                    self._thread = None  # the next change starts another
                    return
            self.flush()

    def _deliver(self, run_id: int) -> None:
        # Read under the lock: slots of one run notify from several threads, and a read taken
        # before a newer one must not be delivered after it (a note would be shown again).
        with self._deliver_lock:
            if self.notifier.needs_servers:
                run = self.store.run(run_id)
            else:
                run = self.store.run_alone(run_id)
            if run is None:
                return
            try:
                self.notifier.run_changed(run)
            except Exception:
                log.exception("notifier failed for run %s", run_id)
