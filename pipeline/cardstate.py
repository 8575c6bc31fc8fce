"""What each Slack card last showed, kept in the store so that no card stays behind.

Pending card edits live in memory; a crash, a kill or a long Slack outage would lose them. The
store therefore records, per run and per alert, the revision its card last showed (and, for a
run, whether every thread reply it needs is posted). On start and periodically, every card
behind the store is queued again.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from pipeline import alerts
from pipeline.alerts import Alert
from pipeline.models import Run
from pipeline.store import Store

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


def record_run(store: Store, run: Run, now: datetime, *, settled: bool) -> None:
    """The card of ``run`` (as read from the store) now shows it; settled when the run is
    finished and every thread reply it needs is posted."""
    _record_run(store, run.id, run_revision(run), now, settled=settled)


def record_unpostable(store: Store, run_id: int, now: datetime) -> None:
    _record_run(store, run_id, UNPOSTABLE, now, settled=True)


def _record_run(store: Store, run_id: int, shown: str, now: datetime, *, settled: bool) -> None:
    with store.transaction() as conn:
        conn.execute(
            """INSERT INTO cards (run_id, shown, settled, at) VALUES (?, ?, ?, ?)
            ON CONFLICT (run_id) DO UPDATE SET shown = excluded.shown,
            settled = excluded.settled, at = excluded.at""",
            [run_id, shown, int(settled), now.isoformat()],
        )


def runs_behind(store: Store) -> list[Run]:
    """Runs shown in Slack whose card is not what the store says, or is missing a reply."""
    rows = store.rows(
        """SELECT runs.id, cards.shown FROM runs LEFT JOIN cards ON cards.run_id = runs.id
        WHERE runs.channel IS NOT NULL AND coalesce(cards.settled, 0) = 0 ORDER BY runs.id"""
    )
    behind = []
    for row in rows:
        run = store.run(int(row["id"]))
        if run is None:
            continue
        if row["shown"] != run_revision(run) or run.state.terminal:
            behind.append(run)
    return behind


def alert_revision(alert: Alert) -> str:
    snoozed = alert.snoozed_until.isoformat() if alert.snoozed_until else ""
    resolved = alert.resolved_at.isoformat() if alert.resolved_at else ""
    return f"{alert.state.value}:{snoozed}:{resolved}"


def record_alert(store: Store, alert: Alert, now: datetime) -> None:
    with store.transaction() as conn:
        conn.execute(
            """INSERT INTO alert_cards (alert_id, shown, at) VALUES (?, ?, ?)
            ON CONFLICT (alert_id) DO UPDATE SET shown = excluded.shown, at = excluded.at""",
            [alert.id, alert_revision(alert), now.isoformat()],
        )


def alerts_behind(store: Store) -> list[Alert]:
    """Alerts with a channel whose card is missing or shows an older state (an alert found
    and resolved while no card was ever shown has nothing to say)."""
    rows = store.rows(
        f"""SELECT alerts.id FROM alerts LEFT JOIN alert_cards ON alert_cards.alert_id = alerts.id
        WHERE alerts.channel IS NOT NULL
        AND coalesce(alert_cards.shown, '') != {_ALERT_REVISION}
        AND NOT (alert_cards.shown IS NULL AND alerts.state = 'resolved')
        ORDER BY alerts.id"""  # noqa: S608 - a constant expression
    )
    found = (alerts.get(store, int(row["id"])) for row in rows)
    return [a for a in found if a is not None]


# alert_revision in SQL (and in migrations.m005_cards): the two must agree.
_ALERT_REVISION = (
    "alerts.state || ':' || coalesce(alerts.snoozed_until, '') || ':' "
    "|| coalesce(alerts.resolved_at, '')"
)
