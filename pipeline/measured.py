"""What byoi measured and made, kept beside the runs: server versions, refreshed images, options.

Tables from migrations.m004_lifecycle; every write is one transaction of the shared store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.store import Store


@dataclass(frozen=True)
class Measurement:
    provider_id: str
    image_id: str
    versions: Mapping[str, str]
    measured_at: datetime


@dataclass(frozen=True)
class RunImage:
    """The image a refresh run made; unpublished when a measured version missed the declared."""

    run_id: int
    image_id: str
    image_name: str
    versions: Mapping[str, str]
    published: bool
    forced: bool = False
    mismatches: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    run_id: int
    batch_size: int = 1
    canary: bool = False
    paused: bool = False
    continued: bool = False
    force: bool = False


def record(
    store: Store,
    provider_id: str,
    *,
    app: str,
    env: str,
    image_id: str,
    versions: Mapping[str, str],
    now: datetime,
    run_id: int | None,
) -> None:
    with store.transaction() as conn:
        conn.execute(
            """INSERT INTO measurements VALUES (?,?,?,?,?,?,?) ON CONFLICT (provider_id) DO UPDATE
            SET versions = excluded.versions, measured_at = excluded.measured_at,
            image_id = excluded.image_id, run_id = excluded.run_id""",
            [provider_id, app, env, image_id, json.dumps(dict(versions)), now.isoformat(), run_id],
        )


def of_servers(store: Store, app: str, env: str) -> dict[str, Measurement]:
    rows = store.rows("SELECT * FROM measurements WHERE app = ? AND env = ?", [app, env])
    return {
        r["provider_id"]: Measurement(
            r["provider_id"],
            r["image_id"],
            json.loads(r["versions"]),
            datetime.fromisoformat(r["measured_at"]),
        )
        for r in rows
    }


def save_image(store: Store, image: RunImage) -> None:
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO run_images VALUES (?,?,?,?,?,?,?)",
            [
                image.run_id,
                image.image_id,
                image.image_name,
                json.dumps(dict(image.versions)),
                int(image.published),
                int(image.forced),
                json.dumps(dict(image.mismatches)),
            ],
        )


def image_of(store: Store, run_id: int) -> RunImage | None:
    rows = store.rows("SELECT * FROM run_images WHERE run_id = ?", [run_id])
    if not rows:
        return None
    r = rows[0]
    return RunImage(
        r["run_id"],
        r["image_id"],
        r["image_name"],
        json.loads(r["versions"]),
        bool(r["published"]),
        bool(r["forced"]),
        json.loads(r["mismatches"]),
    )


def save_options(store: Store, options: RunOptions) -> None:
    with store.transaction() as conn:
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


def options_of(store: Store, run_id: int) -> RunOptions:
    rows = store.rows("SELECT * FROM run_options WHERE run_id = ?", [run_id])
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


def set_paused(store: Store, run_id: int, *, paused: bool, continued: bool) -> bool:
    """Pause a roll after its canary, or let it continue; True if this call changed it."""
    with store.transaction() as conn:
        cursor = conn.execute(
            "UPDATE run_options SET paused = ?, continued = ? WHERE run_id = ? AND paused != ?",
            [int(paused), int(continued), run_id, int(paused)],
        )
        return cursor.rowcount == 1
