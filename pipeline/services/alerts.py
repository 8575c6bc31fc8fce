"""Stale-image alerts, one per (app, env, image, finding): deduped, reminded, snoozed, resolved.

``apply`` turns a scan's observations into the changes to show; time is passed in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pipeline.execution.scan import Observation
from pipeline.state.store import Store

SNOOZE = timedelta(days=7)


class AlertState(StrEnum):
    OPEN = "open"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    id: int
    app: str
    env: str
    image_id: str
    image_name: str
    finding: str
    detail: str
    state: AlertState
    first_seen: datetime
    last_seen: datetime
    snoozed_until: datetime | None
    snoozed_by: str | None
    resolved_at: datetime | None
    channel: str | None
    shown_as: str | None
    """Where the alert is shown: an opaque reference owned by the front end that shows it."""

    @property
    def label(self) -> str:
        return f"alert {self.id}"


@dataclass
class Changes:
    """What a scan changed: new cards to post, reminders in threads, cards to close."""

    new: list[Alert] = field(default_factory=list)
    reminded: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.new or self.reminded or self.resolved)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _alert(row: dict[str, Any]) -> Alert:
    return Alert(
        id=row["id"],
        app=row["app"],
        env=row["env"],
        image_id=row["image_id"],
        image_name=row["image_name"],
        finding=row["finding"],
        detail=row["detail"],
        state=AlertState(row["state"]),
        first_seen=datetime.fromisoformat(row["first_seen"]),
        last_seen=datetime.fromisoformat(row["last_seen"]),
        snoozed_until=_dt(row["snoozed_until"]),
        snoozed_by=row["snoozed_by"],
        resolved_at=_dt(row["resolved_at"]),
        channel=row["channel"],
        shown_as=row["message_ts"],
    )


def get(store: Store, alert_id: int) -> Alert | None:
    rows = store.rows("SELECT * FROM alerts WHERE id = ?", [alert_id])
    return _alert(rows[0]) if rows else None


def unresolved(store: Store, app: str | None = None) -> list[Alert]:
    where = "state != 'resolved'" + (" AND app = ?" if app else "")
    rows = store.rows(
        f"SELECT * FROM alerts WHERE {where} ORDER BY id",  # noqa: S608
        [app] if app else [],
    )
    return [_alert(r) for r in rows]


def findings_of(observation: Observation) -> dict[str, str]:
    """Findings by kind (one alert each), details of the same kind joined."""
    grouped: dict[str, list[str]] = defaultdict(list)
    if observation.staleness:
        for finding in observation.staleness.findings:
            grouped[finding.kind.value].append(finding.detail)
    return {kind: "; ".join(details) for kind, details in grouped.items()}


def apply(
    store: Store, observations: list[Observation], now: datetime, trigger: str = "manual"
) -> Changes:
    """Record a scan: open new alerts, remind unresolved ones, resolve what is no longer found."""
    changes = Changes()
    with store.transaction() as conn:
        current = {(a.app, a.env, a.image_id, a.finding): a for a in unresolved(store)}
        checked = {(o.app, o.env) for o in observations if o.error is None}
        seen: set[tuple[str, str, str, str]] = set()
        for obs in observations:
            if obs.image is None:
                continue
            for kind, detail in findings_of(obs).items():
                key = (obs.app, obs.env, obs.image.id, kind)
                seen.add(key)
                _observe(conn, key, obs, detail, current.get(key), now, changes)
        for key, alert in current.items():
            if key not in seen and (alert.app, alert.env) in checked:
                conn.execute(
                    "UPDATE alerts SET state = 'resolved', resolved_at = ? WHERE id = ?",
                    [now.isoformat(), alert.id],
                )
                changes.resolved.append(alert)
        conn.execute(
            "INSERT INTO scans (at, trigger, findings) VALUES (?, ?, ?)",
            [now.isoformat(), trigger, len(seen)],
        )
    return _reload(store, changes)


def _observe(
    conn: Any,
    key: tuple[str, str, str, str],
    obs: Observation,
    detail: str,
    alert: Alert | None,
    now: datetime,
    changes: Changes,
) -> None:
    app, env, image_id, kind = key
    assert obs.image is not None
    if alert is None:
        cursor = conn.execute(
            """INSERT INTO alerts (app, env, image_id, image_name, finding, detail, state,
            first_seen, last_seen, channel) VALUES (?,?,?,?,?,?,?,?,?,?)
            ON CONFLICT (app, env, image_id, finding) DO UPDATE SET state = 'open',
            detail = excluded.detail, last_seen = excluded.last_seen, resolved_at = NULL""",
            [
                app,
                env,
                image_id,
                obs.image.name,
                kind,
                detail,
                AlertState.OPEN,
                now.isoformat(),
                now.isoformat(),
                obs.channel,
            ],
        )
        changes.new.append(_placeholder(int(cursor.lastrowid or 0), key))
        return
    conn.execute(
        "UPDATE alerts SET last_seen = ?, detail = ? WHERE id = ?",
        [now.isoformat(), detail, alert.id],
    )
    if alert.state == AlertState.SNOOZED and alert.snoozed_until and now < alert.snoozed_until:
        return
    if alert.state == AlertState.SNOOZED:
        conn.execute(
            "UPDATE alerts SET state = 'open', snoozed_until = NULL WHERE id = ?", [alert.id]
        )
    changes.reminded.append(alert)


def _placeholder(alert_id: int, key: tuple[str, str, str, str]) -> Alert:
    epoch = datetime.min
    return Alert(
        alert_id,
        key[0],
        key[1],
        key[2],
        "",
        key[3],
        "",
        AlertState.OPEN,
        epoch,
        epoch,
        None,
        None,
        None,
        None,
        None,
    )


def _reload(store: Store, changes: Changes) -> Changes:
    def fresh(items: list[Alert]) -> list[Alert]:
        return [a for a in (get(store, i.id) for i in items) if a is not None]

    return Changes(fresh(changes.new), fresh(changes.reminded), fresh(changes.resolved))


def snooze(store: Store, alert_id: int, user: str, now: datetime) -> Alert | None:
    with store.transaction() as conn:
        conn.execute(
            """UPDATE alerts SET state = 'snoozed', snoozed_until = ?, snoozed_by = ?
            WHERE id = ? AND state != 'resolved'""",
            [(now + SNOOZE).isoformat(), user, alert_id],
        )
    return get(store, alert_id)


def set_shown(store: Store, alert_id: int, channel: str, shown_as: str) -> None:
    with store.transaction() as conn:
        conn.execute(
            "UPDATE alerts SET channel = ?, message_ts = ? WHERE id = ?",
            [channel, shown_as, alert_id],
        )


def scans(store: Store) -> list[tuple[datetime, str, int]]:
    return [
        (datetime.fromisoformat(r["at"]), r["trigger"], r["findings"])
        for r in store.rows("SELECT * FROM scans ORDER BY id")
    ]
