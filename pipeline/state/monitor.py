"""What monitoring reads from the store: runs by kind and state, the last scan, whether it
takes writes."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from pipeline.domain.models import RunKind, RunState
from pipeline.state.store import Store


def runs_by_kind_and_state(store: Store) -> dict[tuple[RunKind, RunState], int]:
    rows = store.database.rows("SELECT kind, state, COUNT(*) AS n FROM runs GROUP BY kind, state")
    return {(RunKind(r["kind"]), RunState(r["state"])): int(r["n"]) for r in rows}


def last_scan(store: Store) -> datetime | None:
    rows = store.database.rows("SELECT MAX(at) AS at FROM scans")
    return datetime.fromisoformat(rows[0]["at"]) if rows and rows[0]["at"] else None


def write_problem(store: Store) -> str | None:
    """None if the database takes a write now, else why not (read-only, full, locked, gone)."""
    try:
        with store.database.write() as conn:
            conn.execute("UPDATE meta SET value = value WHERE name = 'install_id'")
    except sqlite3.Error as exc:
        return f"the database is not writable: {exc}"
    return None
