"""The run_options table: a refresh's --force, a roll's batches and its canary pause.

Options are first written in the transaction that creates their run (``Store.create_run``), so
a run is never seen, resumed or recovered without them.
"""

from __future__ import annotations

import sqlite3

from pipeline.domain.measured import RunOptions
from pipeline.state.database import Database


def insert(conn: sqlite3.Connection, options: RunOptions) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO run_options VALUES (?,?,?,?,?,?)",
        [
            options.run_id,
            options.batch_size,
            int(options.canary),
            int(options.paused),
            int(options.continued),
            int(options.force),
        ],
    )


def of_run(database: Database, run_id: int) -> RunOptions:
    rows = database.rows("SELECT * FROM run_options WHERE run_id = ?", [run_id])
    if not rows:
        return RunOptions(run_id)
    r = rows[0]
    return RunOptions(
        run_id,
        r["batch_size"],
        bool(r["canary"]),
        bool(r["paused"]),
        bool(r["continued"]),
        bool(r["force"]),
    )


def set_paused(database: Database, run_id: int, *, paused: bool, continued: bool) -> bool:
    """Pause a roll after its canary, or let it continue; True if this call changed it."""
    with database.write() as conn:
        cursor = conn.execute(
            "UPDATE run_options SET paused = ?, continued = ? WHERE run_id = ? AND paused != ?",
            [int(paused), int(continued), run_id, int(paused)],
        )
        return cursor.rowcount == 1
