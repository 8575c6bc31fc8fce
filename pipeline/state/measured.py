"""What byoi measured and made, kept beside the runs: server versions, refreshed images, options.

Tables from migrations.m006_lifecycle; every write is one transaction of the shared database.
"""

from __future__ import annotations

import json
from datetime import datetime

from pipeline.domain.measured import Measurement, RunImage, RunOptions
from pipeline.state import options as run_options
from pipeline.state.store import Store

__all__ = ["Measurement", "RunImage", "RunOptions"]


def of_servers(store: Store, app: str, env: str) -> dict[str, Measurement]:
    rows = store.database.rows("SELECT * FROM measurements WHERE app = ? AND env = ?", [app, env])
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
    with store.database.write() as conn:
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
    rows = store.database.rows("SELECT * FROM run_images WHERE run_id = ?", [run_id])
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


def options_of(store: Store, run_id: int) -> RunOptions:
    return run_options.of_run(store.database, run_id)


def set_paused(store: Store, run_id: int, *, paused: bool, continued: bool) -> bool:
    """Pause a roll after its canary, or let it continue; True if this call changed it."""
    return run_options.set_paused(store.database, run_id, paused=paused, continued=continued)
