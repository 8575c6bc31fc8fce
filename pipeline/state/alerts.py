"""The alerts and scans tables: an alert per (app, env, image, finding), and each scan's count."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pipeline.domain.alerts import REMIND_EVERY, SNOOZE, Alert, AlertState, Changes, Sighting
from pipeline.state.database import Database

Key = tuple[str, str, str, str]


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
        reminded_at=_dt(row["reminded_at"]),
    )


class AlertTable:
    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, alert_id: int) -> Alert | None:
        rows = self.database.rows("SELECT * FROM alerts WHERE id = ?", [alert_id])
        return _alert(rows[0]) if rows else None

    def unresolved(self, app: str | None = None) -> list[Alert]:
        where = "state != 'resolved'" + (" AND app = ?" if app else "")
        rows = self.database.rows(
            f"SELECT * FROM alerts WHERE {where} ORDER BY id",  # noqa: S608
            [app] if app else [],
        )
        return [_alert(r) for r in rows]

    def record_scan(
        self,
        sightings: list[Sighting],
        checked: set[tuple[str, str]],
        now: datetime,
        trigger: str = "manual",
        remind_every: timedelta = REMIND_EVERY,
    ) -> Changes:
        """Open new alerts, remind unresolved ones (at most once per ``remind_every``), resolve
        what a checked environment no longer shows; ``checked`` holds the (app, env) pairs the
        scan could look at."""
        changes = Changes()
        with self.database.write() as conn:
            current = {(a.app, a.env, a.image_id, a.finding): a for a in self.unresolved()}
            seen: set[Key] = set()
            for sighting in sightings:
                for kind, detail in sighting.findings.items():
                    key = (sighting.app, sighting.env, sighting.image_id, kind)
                    seen.add(key)
                    alert = current.get(key)
                    _observe(conn, key, sighting, detail, alert, now, changes, remind_every)
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
        return self._reload(changes)

    def _reload(self, changes: Changes) -> Changes:
        def fresh(items: list[Alert]) -> list[Alert]:
            return [a for a in (self.get(i.id) for i in items) if a is not None]

        return Changes(fresh(changes.new), fresh(changes.reminded), fresh(changes.resolved))

    def snooze(self, alert_id: int, user: str, now: datetime) -> Alert | None:
        with self.database.write() as conn:
            conn.execute(
                """UPDATE alerts SET state = 'snoozed', snoozed_until = ?, snoozed_by = ?
                WHERE id = ? AND state != 'resolved'""",
                [(now + SNOOZE).isoformat(), user, alert_id],
            )
        return self.get(alert_id)

    def set_shown(self, alert_id: int, channel: str, shown_as: str) -> None:
        with self.database.write() as conn:
            conn.execute(
                "UPDATE alerts SET channel = ?, message_ts = ? WHERE id = ?",
                [channel, shown_as, alert_id],
            )

    def scans(self) -> list[tuple[datetime, str, int]]:
        return [
            (datetime.fromisoformat(r["at"]), r["trigger"], r["findings"])
            for r in self.database.rows("SELECT * FROM scans ORDER BY id")
        ]


def _observe(
    conn: Any,
    key: Key,
    sighting: Sighting,
    detail: str,
    alert: Alert | None,
    now: datetime,
    changes: Changes,
    remind_every: timedelta,
) -> None:
    if alert is None:
        changes.new.append(_open(conn, key, sighting, detail, now))
        return
    conn.execute(
        "UPDATE alerts SET last_seen = ?, detail = ? WHERE id = ?",
        [now.isoformat(), detail, alert.id],
    )
    if alert.state == AlertState.SNOOZED and alert.snoozed_until and now < alert.snoozed_until:
        return
    woke = alert.state == AlertState.SNOOZED
    if woke:
        conn.execute(
            "UPDATE alerts SET state = 'open', snoozed_until = NULL WHERE id = ?", [alert.id]
        )
    if woke or alert.reminder_due(now, remind_every):
        conn.execute("UPDATE alerts SET reminded_at = ? WHERE id = ?", [now.isoformat(), alert.id])
        changes.reminded.append(alert)


def _open(conn: Any, key: Key, sighting: Sighting, detail: str, now: datetime) -> Alert:
    app, env, image_id, kind = key
    cursor = conn.execute(
        """INSERT INTO alerts (app, env, image_id, image_name, finding, detail, state,
        first_seen, last_seen, channel, reminded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)
        ON CONFLICT (app, env, image_id, finding) DO UPDATE SET state = 'open',
        detail = excluded.detail, last_seen = excluded.last_seen, resolved_at = NULL,
        reminded_at = excluded.reminded_at""",
        [
            app,
            env,
            image_id,
            sighting.image_name,
            kind,
            detail,
            AlertState.OPEN,
            now.isoformat(),
            now.isoformat(),
            sighting.channel,
            now.isoformat(),
        ],
    )
    return _placeholder(int(cursor.lastrowid or 0), key)


def _placeholder(alert_id: int, key: Key) -> Alert:
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
