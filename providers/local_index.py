"""The local provider's index of live servers: a small SQLite file beside their directories.

A cloud answers "servers tagged byoi:app=web" from its own index; reading every
``server.json`` instead made each listing cost as much as the whole fleet (and every server
ever terminated). The index holds live servers only, with their tags, and is written so that it
may list a server that is gone but never miss one that exists: a server enters the index before
its directory is made and leaves it after its ``server.json`` says terminated.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from providers.base import TAG_APP, TAG_ENV, TAG_KEY, KeyMatch

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS live (id TEXT PRIMARY KEY, meta TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS tags (id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (name, value, id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS tags_id ON tags (id)",
)
_COLUMNS = {"app": TAG_APP, "env": TAG_ENV, "key": TAG_KEY}
"""Tags also held in columns of ``live``, so that a count is one range of one index."""
_KEYED = (
    *(f"ALTER TABLE live ADD COLUMN {column} TEXT" for column in _COLUMNS),
    *(
        f"UPDATE live SET {column} = "  # noqa: S608
        f"(SELECT value FROM tags WHERE tags.id = live.id AND name = '{tag}')"
        for column, tag in _COLUMNS.items()
    ),
    "CREATE INDEX live_keyed ON live (app, env, key)",
)


class ServerIndex:
    """Live servers' metadata by id, searchable by tag; safe across threads and processes."""

    def __init__(self, servers: Path, scan: Callable[[], Iterator[Mapping[str, Any]]]) -> None:
        path = servers / "index.db"
        if not path.exists():
            _build(path, scan)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 10000")
        self._conn.execute("PRAGMA synchronous = NORMAL")  # as the store: survives a crash
        self._lock = threading.Lock()
        self._add_columns()

    def close(self) -> None:
        self._conn.close()

    def put(self, meta: Mapping[str, Any]) -> None:
        with self._write() as conn:
            _put(conn, meta)

    def remove(self, server_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM live WHERE id = ?", [server_id])
            conn.execute("DELETE FROM tags WHERE id = ?", [server_id])

    def find(self, tags: Mapping[str, str]) -> list[dict[str, Any]]:
        """Metadata of the live servers carrying all of ``tags``, by id."""
        if tags:
            match = " INTERSECT ".join(
                ["SELECT id FROM tags WHERE name = ? AND value = ?"] * len(tags)
            )
            sql = f"SELECT meta FROM live WHERE id IN ({match}) ORDER BY id"  # noqa: S608
            params = [part for pair in tags.items() for part in pair]
        else:
            sql, params = "SELECT meta FROM live ORDER BY id", []
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [json.loads(meta) for (meta,) in rows]

    def count(self, tags: Mapping[str, str], keys: KeyMatch) -> int:
        """How many live servers carry all of ``tags`` and a key that ``keys`` matches, counted
        in the index's columns (and its tags table for other tags): no metadata is decoded."""
        where, params = _matching(tags)
        # The keys with the prefix are one range of the index; the others are looked up.
        end = keys.prefix[:-1] + chr(ord(keys.prefix[-1]) + 1) if keys.prefix else None
        ranged = "key >= ? AND key < ?" if end is not None else "key IS NOT NULL"
        bounds = [keys.prefix, end] if end is not None else []
        listed = [k for k in keys.keys if end is None or not keys.prefix <= k < end]
        sql = f"""SELECT (SELECT COUNT(*) FROM live WHERE {where} AND {ranged})
        + (SELECT COUNT(*) FROM live WHERE {where}
        AND key IN (SELECT value FROM json_each(?)))"""  # noqa: S608
        with self._lock:
            found = self._conn.execute(sql, [*params, *bounds, *params, json.dumps(listed)])
            (count,) = found.fetchone()
        return int(count)

    def _add_columns(self) -> None:
        """An index made before ``live`` had its tag columns gets them, filled from ``tags``."""
        if self._has_columns():
            return
        with self._write() as conn:
            if not self._has_columns():  # another process may have added them meanwhile
                for statement in _KEYED:
                    conn.execute(statement)

    def _has_columns(self) -> bool:
        return "key" in {row[1] for row in self._conn.execute("PRAGMA table_info(live)")}

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")


def _matching(tags: Mapping[str, str]) -> tuple[str, list[str]]:
    """A WHERE clause on ``live`` for the servers carrying all of ``tags``, and its parameters."""
    clauses, params = ["1"], []
    by_tag = {tag: column for column, tag in _COLUMNS.items()}
    for name, value in tags.items():
        if name in by_tag:
            clauses.append(f"{by_tag[name]} = ?")
            params.append(value)
        else:
            clauses.append("id IN (SELECT id FROM tags WHERE name = ? AND value = ?)")
            params += [name, value]
    return " AND ".join(clauses), params


def _put(conn: sqlite3.Connection, meta: Mapping[str, Any]) -> None:
    server_id = str(meta["id"])
    tags = {str(k): str(v) for k, v in dict(meta.get("tags") or {}).items()}
    conn.execute(
        "INSERT OR REPLACE INTO live (id, meta, app, env, key) VALUES (?, ?, ?, ?, ?)",
        [server_id, json.dumps(meta), *(tags.get(tag) for tag in _COLUMNS.values())],
    )
    conn.execute("DELETE FROM tags WHERE id = ?", [server_id])
    conn.executemany("INSERT INTO tags VALUES (?, ?, ?)", [(server_id, *t) for t in tags.items()])


def _build(path: Path, scan: Callable[[], Iterator[Mapping[str, Any]]]) -> None:
    """First use of a servers/ directory: index what is there, then publish it in one rename."""
    with (path.parent / ".index.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return  # another process built it while this one waited
        staging = path.with_name(f".index.{os.getpid()}.tmp")
        staging.unlink(missing_ok=True)
        conn = sqlite3.connect(staging, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN")
            for statement in (*_SCHEMA, *_KEYED):
                conn.execute(statement)
            for meta in scan():
                _put(conn, meta)
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.replace(staging, path)
