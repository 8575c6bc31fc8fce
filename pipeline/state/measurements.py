"""A server's measured versions as rows of the ``measurements`` table (migrations.m006).

Written by a slot's step write (state/steps.py), which stores a probe's measurement in the
same transaction as the probe's end.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime

Found = tuple[str, str, str, str, Mapping[str, str], datetime, int | None]
"""A measurement: provider id, app, env, image id, versions, when, run id."""

UPSERT = """INSERT INTO measurements VALUES (?,?,?,?,?,?,?) ON CONFLICT (provider_id) DO UPDATE
SET versions = excluded.versions, measured_at = excluded.measured_at,
image_id = excluded.image_id, run_id = excluded.run_id"""


def save(conn: sqlite3.Connection, found: Sequence[Found]) -> None:
    """Store ``found`` in the transaction open on ``conn`` (a server's newest measurement wins).

    A cohort's thousand servers mostly measured the same versions: each distinct set is
    written out as JSON once."""
    texts: dict[tuple[tuple[str, str], ...], str] = {}
    rows = []
    for provider_id, app, env, image_id, versions, at, run in found:
        items = tuple(versions.items())
        text = texts.get(items)
        if text is None:
            text = texts[items] = json.dumps(dict(items))
        rows.append([provider_id, app, env, image_id, text, at.isoformat(), run])
    conn.executemany(UPSERT, rows)
