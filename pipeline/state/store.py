"""State in one SQLite file: runs, their servers, approvals and the audit log.

Every change is one ``BEGIN IMMEDIATE`` transaction together with its audit record, so a
crash leaves either the old or the new state, and two processes never both win a race.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.domain.measured import RunOptions
from pipeline.domain.models import (
    AuditEvent,
    Run,
    RunState,
    ServerStatus,
)
from pipeline.domain.ownership import key_prefix
from pipeline.errors import ByoiError, Inconsistency
from pipeline.state import options as run_options
from pipeline.state import runrows
from pipeline.state.alerts import AlertTable
from pipeline.state.cards import CardTable
from pipeline.state.database import Database
from pipeline.state.history import RunHistory
from pipeline.state.measurements import Found
from pipeline.state.steps import ServerEvent, SlotChange, StepTable


class ActiveRunExists(ByoiError):
    def __init__(self, run: Run) -> None:
        super().__init__(f"run {run.id} is already active for {run.app}/{run.env}")
        self.run = run


@dataclass(frozen=True)
class ApprovalResult:
    run: Run
    recorded: bool
    """False when this user had already approved, or the run was no longer waiting."""
    started: bool
    """True for exactly one caller: the approval that completed the count."""


# SQLite uses the partial index ``runs_one_active`` only for a WHERE clause that repeats the
# index's own, literals in the same order (migrations.m001_runs); built from a frozenset, the
# order would follow the process's hash seed and most processes would scan ``runs_app``.
ACTIVE_ORDER = (RunState.PLANNED, RunState.AWAITING_APPROVAL, RunState.APPROVED, RunState.RUNNING)
ACTIVE_SQL = "state IN (" + ", ".join(f"'{s.value}'" for s in ACTIVE_ORDER) + ")"


class Store:
    def __init__(self, path: Path | str) -> None:
        self.database = Database(path)
        self.path = self.database.path
        self.db = self.database.db
        self._lock = self.database.lock
        self._write = self.database.write
        self._rows = self.database.rows
        self.alerts = AlertTable(self.database)
        self.cards = CardTable(self.database)
        self.history = RunHistory(self.database)
        self.steps = StepTable(self.database)
        rows = self._rows("SELECT value FROM meta WHERE name = 'install_id'")
        self.install_id = str(rows[0]["value"])

    def close(self) -> None:
        self.database.close()

    # runs -------------------------------------------------------------------------------

    def create_run(self, run: Run, now: datetime, options: RunOptions | None = None) -> Run:
        """Store a new run, its server slots and its options (``--force``, a roll's batches
        and canary) in one transaction; refuses a second active run per app/env."""
        with self._write() as conn:
            run_id = self._insert_run(conn, run, now)
            slots = [
                runrows.slot_values(run_id, self._slot_key(run_id, s.slot), s, now)
                for s in run.servers
            ]
            conn.executemany(runrows.INSERT_SLOT, slots)
            if options is not None:
                run_options.insert(conn, replace(options, run_id=run_id))
            self._audit(
                conn,
                now,
                run_id,
                run.requester,
                "requested",
                f"{run.kind} {run.current}→{run.desired} image {run.image_name}",
            )
        # Its slots as just inserted, not read back: a thousand of them on a command's path.
        stored = self.run_alone(run_id)
        if stored is None:
            raise Inconsistency(f"run {run_id} is not in the store")
        return replace(stored, servers=runrows.servers_inserted(slots))

    def _slot_key(self, run_id: int, slot: int) -> str:
        return f"{key_prefix(self.install_id)}{run_id}-{slot}"

    def _insert_run(self, conn: sqlite3.Connection, run: Run, now: datetime) -> int:
        try:
            cursor = conn.execute(runrows.INSERT_RUN, runrows.run_values(run, now))
        except sqlite3.IntegrityError:
            active = self._active(conn, run.app, run.env)
            if active is None:
                raise
            raise ActiveRunExists(active) from None
        return int(cursor.lastrowid or 0)

    def _active(self, conn: sqlite3.Connection, app: str, env: str) -> Run | None:
        row = conn.execute(
            f"SELECT id FROM runs WHERE app = ? AND env = ? AND {ACTIVE_SQL}",  # noqa: S608
            [app, env],
        ).fetchone()
        return self.run(int(row[0])) if row else None

    def run(self, run_id: int) -> Run | None:
        rows = self._rows("SELECT * FROM runs WHERE id = ?", [run_id])
        return self._hydrate(rows[0]) if rows else None

    def run_alone(self, run_id: int) -> Run | None:
        """The run without its servers (``servers`` is empty): what is enough to know which
        run changed and where it is shown, without reading a fleet's rows."""
        rows = self._rows("SELECT * FROM runs WHERE id = ?", [run_id])
        return self._hydrate(rows[0], servers=False) if rows else None

    def existing_run(self, run_id: int) -> Run:
        """A run byoi stored itself (it never deletes one): raises Inconsistency if it is gone."""
        run = self.run(run_id)
        if run is None:
            raise Inconsistency(f"run {run_id} is not in the store")
        return run

    def active_run(self, app: str, env: str) -> Run | None:
        with self._lock:
            return self._active(self.db.conn, app, env)

    def runs(self, app: str | None = None, limit: int = 10) -> list[Run]:
        where, params = ("WHERE app = ?", [app]) if app else ("", [])
        rows = self._rows(
            f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
            [*params, limit],
        )
        return [self._hydrate(r) for r in rows]

    def run_ids_in(self, states: Iterable[RunState]) -> list[int]:
        """The ids of the runs in ``states``, oldest first, without reading their fleets."""
        wanted = sorted(states)
        marks = ",".join("?" * len(wanted))
        rows = self.database.tuples(
            f"SELECT id FROM runs WHERE state IN ({marks}) ORDER BY id",  # noqa: S608
            wanted,
        )
        return [int(run_id) for (run_id,) in rows]

    def runs_in(self, states: Iterable[RunState]) -> list[Run]:
        wanted = list(states)
        marks = ",".join("?" * len(wanted))
        rows = self._rows(f"SELECT * FROM runs WHERE state IN ({marks}) ORDER BY id", wanted)  # noqa: S608
        return [self._hydrate(r) for r in rows]

    def wanted_keys(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` whose server should exist: a finished or in-flight slot that
        launches one.

        One query, whatever the history: only the given keys are looked up (servers.key is
        unique), so the reconciler's cost follows the live fleet, not every run ever recorded.
        """
        # The slots that launch a server (models.creates_server): every scale-up and bake slot,
        # a roll's odd (new) slots. A builder is wanted only while its bake is in flight.
        rows = self._rows(
            f"""SELECT s.key FROM servers s JOIN runs r ON r.id = s.run_id
            WHERE s.key IN (SELECT value FROM json_each(?))
            AND (r.kind IN ('scale_up', 'bake') OR (r.kind = 'roll' AND s.slot % 2 = 1))
            AND ((s.status = 'done' AND r.kind != 'bake')
                 OR (r.{ACTIVE_SQL} AND s.status IN ('pending', 'working')))""",  # noqa: S608
            [json.dumps(sorted(set(keys)))],
        )
        return {str(r["key"]) for r in rows}

    def _hydrate(self, row: Mapping[str, Any], *, servers: bool = True) -> Run:
        slots = (
            self.database.tuples(
                f"SELECT {runrows.SERVER_COLUMNS} FROM servers WHERE run_id = ? ORDER BY slot",  # noqa: S608
                [row["id"]],
            )
            if servers
            else []
        )
        approvals = self._rows(
            "SELECT user FROM approvals WHERE run_id = ? ORDER BY at", [row["id"]]
        )
        return runrows.run_from(
            row,
            servers=runrows.servers_from(slots),
            approvers=tuple(a["user"] for a in approvals),
        )

    def transition(
        self,
        run_id: int,
        allowed: Iterable[RunState],
        to: RunState,
        now: datetime,
        *,
        actor: str,
        reason: str | None = None,
    ) -> bool:
        """Move a run to ``to`` if it is in one of ``allowed``; True if this call moved it."""
        allowed_states = list(allowed)
        marks = ",".join("?" * len(allowed_states))
        with self._write() as conn:
            cursor = conn.execute(
                f"""UPDATE runs SET state = ?, updated_at = ?, reason = COALESCE(?, reason)
                WHERE id = ? AND state IN ({marks})""",  # noqa: S608
                [to, now.isoformat(), reason, run_id, *allowed_states],
            )
            moved = cursor.rowcount == 1
            if moved:
                self._audit(conn, now, run_id, actor, to.value, reason or "")
        return moved

    def approve(self, run_id: int, user: str, now: datetime) -> ApprovalResult:
        """Record an approval; the one that completes the count moves the run to approved."""
        with self._write() as conn:
            run = self.existing_run(run_id)
            if run.state != RunState.AWAITING_APPROVAL:
                return ApprovalResult(run, recorded=False, started=False)
            if run.expires_at and now >= run.expires_at:
                conn.execute(
                    "UPDATE runs SET state = ?, updated_at = ? WHERE id = ?",
                    [RunState.EXPIRED, now.isoformat(), run_id],
                )
                self._audit(conn, now, run_id, user, "expired", "approval came after expiry")
                return ApprovalResult(replace(run, state=RunState.EXPIRED), False, False)
            cursor = conn.execute(
                "INSERT OR IGNORE INTO approvals VALUES (?, ?, ?)", [run_id, user, now.isoformat()]
            )
            recorded = cursor.rowcount == 1
            if recorded:
                self._audit(conn, now, run_id, user, "approved", "")
            (count,) = conn.execute(
                "SELECT count(*) FROM approvals WHERE run_id = ?", [run_id]
            ).fetchone()
            started = False
            if count >= run.approvals_needed:
                moved = conn.execute(
                    "UPDATE runs SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
                    [RunState.APPROVED, now.isoformat(), run_id, RunState.AWAITING_APPROVAL],
                )
                started = moved.rowcount == 1
        return ApprovalResult(self.existing_run(run_id), recorded, started)

    def request_cancel(self, run_id: int, now: datetime, actor: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
                [now.isoformat(), run_id],
            )
            self._audit(conn, now, run_id, actor, "cancel_requested", "")

    def set_shown(self, run_id: int, channel: str, shown_as: str) -> None:
        """Record where a front end showed a run (``shown_as`` is its own opaque reference)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE runs SET channel = ?, message_ts = ? WHERE id = ?",
                [channel, shown_as, run_id],
            )

    # servers ----------------------------------------------------------------------------

    def update_server(
        self, run_id: int, slot: int, now: datetime, *, event: str, **fields: Any
    ) -> None:
        """Change a server slot and audit it in one transaction; returns once committed."""
        self.record_server(run_id, slot, now, [(event, fields)])

    def record_server(
        self,
        run_id: int,
        slot: int,
        now: datetime,
        events: Sequence[ServerEvent],
        unless_cancelled: Sequence[ServerEvent] = (),
        measured: Sequence[Found] = (),
    ) -> bool:
        """One step boundary of a slot, committed before it returns (see state/steps.py);
        True if the run's cancel had been requested (``unless_cancelled`` then not applied)."""
        return self.steps.record(run_id, slot, now, events, unless_cancelled, measured)

    def record_servers(self, changes: Sequence[SlotChange]) -> list[bool]:
        """Slots' step boundaries, committed before it returns (see state/steps.py): one change
        shares a transaction with other threads' changes, many go in one transaction of their
        own. True for each change whose run's cancel had been requested."""
        if len(changes) == 1:
            return [self.steps.write(changes[0])]
        return self.steps.record_all(changes)

    def server_outcomes(self, run_id: int) -> list[tuple[ServerStatus, str | None]]:
        """Each slot's status and failure reason, by slot: a run's outcome without the run."""
        return self.steps.outcomes(run_id)

    def cancellers(self, run_ids: Iterable[int]) -> dict[int, str]:
        """Who cancelled (or rolled back) each of these runs that someone did: the first to ask
        while it ran, or who cancelled it before it started (byoi's own moves are not asks)."""
        rows = self._rows(
            """SELECT run_id, actor FROM audit
            WHERE (event = 'cancel_requested' OR (event = 'cancelled' AND actor != 'byoi'))
            AND run_id IN (SELECT value FROM json_each(?)) ORDER BY id DESC""",
            [json.dumps(sorted(set(run_ids)))],
        )
        return {int(r["run_id"]): str(r["actor"]) for r in rows}  # the first one wins

    def cancel_requested(self, run_id: int) -> bool:
        """Checked before every step of every server: one column, not the whole run."""
        rows = self._rows("SELECT cancel_requested FROM runs WHERE id = ?", [run_id])
        return bool(rows and rows[0]["cancel_requested"])

    # audit ------------------------------------------------------------------------------

    def _audit(
        self,
        conn: sqlite3.Connection,
        now: datetime,
        run_id: int | None,
        actor: str,
        event: str,
        detail: str,
    ) -> None:
        conn.execute(
            "INSERT INTO audit (at, run_id, actor, event, detail) VALUES (?,?,?,?,?)",
            [now.isoformat(), run_id, actor, event, detail],
        )

    def audit(
        self, now: datetime, run_id: int | None, actor: str, event: str, detail: str = ""
    ) -> None:
        with self._write() as conn:
            self._audit(conn, now, run_id, actor, event, detail)

    def audit_events(self, run_id: int | None = None, limit: int = 200) -> list[AuditEvent]:
        where, params = ("WHERE run_id = ?", [run_id]) if run_id is not None else ("", [])
        rows = self._rows(
            f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
            [*params, limit],
        )
        return [
            AuditEvent(
                r["id"],
                datetime.fromisoformat(r["at"]),
                r["run_id"],
                r["actor"],
                r["event"],
                r["detail"],
            )
            for r in reversed(rows)
        ]
