"""One SQLite database, migrated on open: write transactions on one connection, reads on another.

Reads go through their own connection, so they never wait behind a commit (WAL lets them see the
last committed state meanwhile); a read inside a write on the same thread sees the write's own
changes. ``:memory:`` has only the one connection.
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
        conn = self.db.conn
        self.reader = conn
        self._read_lock = self.lock
        self._writing = threading.local()
        if self.path != ":memory:":
            self.reader = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            self.reader.execute("PRAGMA busy_timeout = 10000")
            self._read_lock = threading.RLock()

    def close(self) -> None:
        self.db.close()
        if self.reader is not self.db.conn:
            self.reader.close()

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
        writing = getattr(self._writing, "active", False)
        with self.lock if writing else self._read_lock:
            cursor = (self.db.conn if writing else self.reader).execute(sql, list(params))
            return cursor, cursor.fetchall()
