"""Servers this installation adopted from another one, and reading another database's id."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from pipeline.domain.ownership import Adoption
from pipeline.state.database import Database


def keys(database: Database) -> frozenset[str]:
    """The keys of every adopted server."""
    return frozenset(str(r["key"]) for r in database.rows("SELECT key FROM adopted"))


def record(database: Database, found: Iterable[Adoption], now: datetime, actor: str) -> None:
    """Record ``found`` as this installation's servers, each with an audit record."""
    with database.write() as conn:
        for item in found:
            conn.execute(
                "INSERT OR IGNORE INTO adopted VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    item.key,
                    item.provider,
                    item.server_id,
                    item.app,
                    item.env,
                    item.installation,
                    now.isoformat(),
                ],
            )
            conn.execute(
                "INSERT INTO audit (at, run_id, actor, event, detail) VALUES (?, NULL, ?, ?, ?)",
                [
                    now.isoformat(),
                    actor,
                    "adopted",
                    f"{item.provider} {item.server_id} {item.key} ({item.app}/{item.env})",
                ],
            )


def install_id_of(path: Path) -> str:
    """The install id of another byoi database, read without changing it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE name = 'install_id'").fetchone()
    finally:
        conn.close()
    if row is None:
        raise ValueError(f"{path} is not a byoi database")
    return str(row[0])
