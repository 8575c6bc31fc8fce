"""One SQLite database, migrated on open: write transactions on one connection, reads on another.

Reads go through connections of their own, one per read at a time (a few are kept open), so they
never wait behind a commit or behind another thread's read (WAL lets them see the last committed
state meanwhile); a read inside a write on the same thread sees the write's own changes.
``:memory:`` has only the one connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from pipeline.errors import UserError
from pipeline.state import migrations

READERS = 4
"""Reader connections kept open for the next reads (more are opened while more read at once)."""


class Database:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self.db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        self.commits = 0
        """Write transactions committed (the benchmarks report them per server)."""
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise UserError(
                f"cannot open the database {self.path}: {exc}. Restore it from a backup "
                "(docs/operations.md), or point `database:` in byoi.yml at another file."
            ) from exc

    def _open(self) -> None:
        if self.path != ":memory:":
            self.db.enable_wal()
        self.db.execute("PRAGMA busy_timeout = 10000")
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA synchronous = NORMAL")
        with self.lock:
            migrations.apply(self.db)
        self._writing = threading.local()
        self._idle: list[sqlite3.Connection] = []
        """Reader connections not in use; a read takes one, or opens one if none is idle."""
        self._idle_lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self.db.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading: each reader its own, so a long read (a card's history)
        never holds up another thread's (WAL lets them all see the last commit). ``:memory:``
        has only the write connection."""
        if self.path == ":memory:":
            with self.lock:
                yield self.db.conn
            return
        with self._idle_lock:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA busy_timeout = 10000")
        try:
            yield conn
        finally:
            with self._idle_lock:
                kept = not self._closed and len(self._idle) < READERS
                if kept:
                    self._idle.append(conn)
            if not kept:
                conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction: a crash leaves the old state or the new one."""
        with self.lock:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            self._writing.active = True
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                self._writing.active = False
            conn.execute("COMMIT")
            self.commits += 1

    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cursor, found = self._read(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in found]

    def tuples(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """``rows`` as tuples in the order selected: for reads of a thousand rows at a time."""
        return self._read(sql, params)[1]

    def _read(
        self, sql: str, params: Iterable[Any]
    ) -> tuple[sqlite3.Cursor, list[tuple[Any, ...]]]:
        # Inside a write, the write's own connection: the read sees the write's changes.
        if getattr(self._writing, "active", False):
            with self.lock:
                cursor = self.db.conn.execute(sql, list(params))
                return cursor, cursor.fetchall()
        with self.reading() as conn:
            cursor = conn.execute(sql, list(params))
            return cursor, cursor.fetchall()
