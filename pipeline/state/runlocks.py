"""Which byoi process carries out a run, when several share one database.

Any process may approve a run and start it, and each resumes the runs left in flight when it
starts; without this, a second process started beside a busy one would carry out the same
runs again. A process holds a lock on one byte of ``<database>.runs`` (the byte at the run's
id) while it carries out that run. The kernel drops a process's locks when it dies, kill -9
included, so a crash never leaves a run locked. POSIX record locks belong to the process: the
runner's own table of threads keeps one thread per run inside it, and the file is opened once
and never closed while the process lives (closing any descriptor of it would drop every lock).
"""

from __future__ import annotations

import fcntl
import os
import threading


class RunLocks:
    def __init__(self, database: str) -> None:
        self._path = None if database == ":memory:" else f"{database}.runs"
        self._fd: int | None = None
        self._guard = threading.Lock()

    def take(self, run_id: int) -> bool:
        """Lock ``run_id`` for this process; False if another process holds it."""
        fd = self._file()
        if fd is None:
            return True
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, run_id)
        except OSError:  # EACCES or EAGAIN: held by another process
            return False
        return True

    def give_back(self, run_id: int) -> None:
        fd = self._file()
        if fd is not None:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, run_id)

    def _file(self) -> int | None:
        with self._guard:
            if self._fd is None and self._path is not None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            return self._fd
