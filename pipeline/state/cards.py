"""What each run card and alert card last showed, so that no card stays behind the store.

Pending card edits live in the front end's memory; a crash, a kill or a long chat outage would
lose them. The store therefore records, per run and per alert, the revision its card last
showed (and, for a run, whether every thread reply it needs is posted). On start and
periodically, the front end queues every card behind the store again (services/display.py).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from pipeline.domain.alerts import Alert
from pipeline.domain.models import Run
from pipeline.state.database import Database

UNPOSTABLE = "unpostable"
"""Shown for a card byoi may not post (not in the channel): not retried on every sweep."""


def run_revision(run: Run) -> str:
    """Everything a run card shows that the store can change, as one short digest."""
    shown = [
        run.state.value,
        run.reason,
        list(run.approvers),
        run.cancel_requested,
        [(s.slot, s.status.value, s.step, s.reason, s.cleanup) for s in run.servers],
    ]
    return hashlib.sha256(json.dumps(shown, default=str).encode()).hexdigest()[:16]


def alert_revision(alert: Alert) -> str:
    snoozed = alert.snoozed_until.isoformat() if alert.snoozed_until else ""
    resolved = alert.resolved_at.isoformat() if alert.resolved_at else ""
    return f"{alert.state.value}:{snoozed}:{resolved}"


# alert_revision in SQL (and in migrations.m005_cards): the two must agree.
_ALERT_REVISION = (
    "alerts.state || ':' || coalesce(alerts.snoozed_until, '') || ':' "
    "|| coalesce(alerts.resolved_at, '')"
)


class CardTable:
    def __init__(self, database: Database) -> None:
        self.database = database

    def record_run(self, run_id: int, shown: str, now: datetime, *, settled: bool) -> None:
        """The card of run ``run_id`` now shows revision ``shown``; settled when the run is
        finished and every thread reply it needs is posted."""
        with self.database.write() as conn:
            conn.execute(
                """INSERT INTO cards (run_id, shown, settled, at) VALUES (?, ?, ?, ?)
                ON CONFLICT (run_id) DO UPDATE SET shown = excluded.shown,
                settled = excluded.settled, at = excluded.at""",
                [run_id, shown, int(settled), now.isoformat()],
            )

    def unsettled_runs(self) -> list[tuple[int, str | None]]:
        """(run id, revision last shown) of every shown run whose card is not settled."""
        rows = self.database.rows(
            """SELECT runs.id, cards.shown FROM runs LEFT JOIN cards ON cards.run_id = runs.id
            WHERE runs.channel IS NOT NULL AND coalesce(cards.settled, 0) = 0 ORDER BY runs.id"""
        )
        return [(int(r["id"]), None if r["shown"] is None else str(r["shown"])) for r in rows]

    def record_alert(self, alert: Alert, now: datetime) -> None:
        with self.database.write() as conn:
            conn.execute(
                """INSERT INTO alert_cards (alert_id, shown, at) VALUES (?, ?, ?)
                ON CONFLICT (alert_id) DO UPDATE SET shown = excluded.shown, at = excluded.at""",
                [alert.id, alert_revision(alert), now.isoformat()],
            )

    def alerts_behind(self) -> list[int]:
        """Ids of alerts with a channel whose card is missing or shows an older state (an alert
        found and resolved while no card was ever shown has nothing to say)."""
        rows = self.database.rows(
            f"""SELECT alerts.id FROM alerts
            LEFT JOIN alert_cards ON alert_cards.alert_id = alerts.id
            WHERE alerts.channel IS NOT NULL
            AND coalesce(alert_cards.shown, '') != {_ALERT_REVISION}
            AND NOT (alert_cards.shown IS NULL AND alerts.state = 'resolved')
            ORDER BY alerts.id"""  # noqa: S608 - a constant expression
        )
        return [int(r["id"]) for r in rows]
