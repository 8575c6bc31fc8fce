"""Server slots' step records: many servers' changes share a transaction (group commit).

A large parallel run has every server reach a step boundary at once. Each boundary is one
change of the slot (the step's end, what it reported, the next step's start) together with the
run's cancel check; changes queued while a transaction commits go into the next one
(state/groupcommit.py), and each writer returns only once its own change is committed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from graphlib import TopologicalSorter
from itertools import groupby
from typing import Any

from pipeline.domain.models import ServerStatus
from pipeline.errors import Inconsistency
from pipeline.state import measurements
from pipeline.state.database import Database
from pipeline.state.groupcommit import GroupCommit
from pipeline.state.measurements import Found

SERVER_FIELDS = frozenset(
    ("status", "step", "provider_id", "registered", "reason", "cleanup", "note")
)

ServerEvent = tuple[str, Mapping[str, Any]]
"""An audited change of a server slot: the event's name and the fields it sets."""

AuditRow = tuple[str, int, str, str, str]
"""at, run id, actor, event, detail"""


@dataclass(frozen=True)
class SlotChange:
    """One step boundary of a slot: ``events`` (each a change of the slot's fields, audited as
    one event), then ``unless_cancelled`` if the run's cancel was not requested, and the
    versions a probe ``measured`` (stored with the probe's end)."""

    run_id: int
    slot: int
    at: str
    events: tuple[ServerEvent, ...]
    unless_cancelled: tuple[ServerEvent, ...] = ()
    measured: tuple[Found, ...] = ()


def _audit_rows(applied: Sequence[tuple[SlotChange, Sequence[ServerEvent]]]) -> list[AuditRow]:
    """The audit rows of a write: one per event of a slot, its detail naming the slot and the
    fields it set; an event that slots of the write share (a cohort's step start or end, one
    mapping of fields for all) is one row naming them all (``"slots"``), so a thousand servers
    reaching a step together write one row, not a thousand (state/history.py reads both).
    Each slot's events keep their order among the rows (a shared row comes after every slot's
    events before it)."""
    uses = Counter(id(fields) for _, events in applied for _, fields in events)
    rows: dict[tuple[Any, ...], tuple[SlotChange, str, Mapping[str, Any], list[int]]] = {}
    order: TopologicalSorter[tuple[Any, ...]] = TopologicalSorter()
    for index, (change, events) in enumerate(applied):
        before: tuple[tuple[Any, ...], ...] = ()
        for position, (event, fields) in enumerate(events):
            shared = uses[id(fields)] > 1  # the mappings live as long as ``applied``
            key = (change.run_id, change.at, event, id(fields)) if shared else (index, position)
            rows.setdefault(key, (change, event, fields, []))[3].append(change.slot)
            order.add(key, *before)
            before = (key,)
    return [_row(*rows[key]) for key in order.static_order()]


def _row(change: SlotChange, event: str, fields: Mapping[str, Any], slots: list[int]) -> AuditRow:
    named: dict[str, Any] = {"slot": slots[0]} if len(slots) == 1 else {"slots": slots}
    detail = json.dumps({**named, **{k: _value(v) for k, v in fields.items()}})
    return (change.at, change.run_id, "byoi", event, detail)


def _value(value: Any) -> Any:
    """A field as JSON has it: true, 3, null as such; anything else as its text, cut short."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:4000]


class StepTable:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._group = GroupCommit(database.lock, self._commit)

    def record(
        self,
        run_id: int,
        slot: int,
        now: datetime,
        events: Sequence[ServerEvent],
        unless_cancelled: Sequence[ServerEvent] = (),
        measured: Sequence[Found] = (),
    ) -> bool:
        """Apply ``events`` (each a change of the slot's fields, audited as one event) and then,
        unless the run's cancel has been requested, ``unless_cancelled``: all in one transaction
        with the slot's ``measured`` versions (a probe's, stored with the probe's end),
        returning once it is committed. True if cancel had been requested.

        The cancel check is one query per run in the shared transaction, not one per server.
        """
        change = SlotChange(
            run_id, slot, now.isoformat(), tuple(events), tuple(unless_cancelled), tuple(measured)
        )
        return self.write(change)

    def write(self, change: SlotChange) -> bool:
        """``record`` of a change made already."""
        return self._group.write(change)

    def record_all(self, changes: Sequence[SlotChange]) -> list[bool]:
        """Many slots' changes in one transaction, committed before it returns: what a cohort
        of servers reaching a step boundary together writes. True for each change whose run's
        cancel had been requested."""
        if not changes:
            return []
        with self.database.lock:
            return self._commit(changes)

    def outcomes(self, run_id: int) -> list[tuple[ServerStatus, str | None]]:
        """Each slot's status and failure reason, by slot: a run's outcome without the run."""
        rows = self.database.rows(
            "SELECT status, reason FROM servers WHERE run_id = ? ORDER BY slot", [run_id]
        )
        return [(ServerStatus(r["status"]), r["reason"]) for r in rows]

    def _commit(self, changes: Sequence[SlotChange]) -> list[bool]:
        with self.database.write() as conn:
            asked = sorted({c.run_id for c in changes if c.unless_cancelled})
            marks = ",".join("?" * len(asked))
            cancelled = {
                int(run_id)
                for run_id, flag in conn.execute(
                    f"SELECT id, cancel_requested FROM runs WHERE id IN ({marks})",  # noqa: S608
                    asked,
                )
                if flag
            }
            applied = [
                (c, c.events if c.run_id in cancelled else (*c.events, *c.unless_cancelled))
                for c in changes
            ]
            updates = [
                (c, {k: v for _, f in events for k, v in f.items()}) for c, events in applied
            ]
            # Consecutive changes of the same columns go in one statement, in order.
            for columns, group in groupby(updates, key=lambda u: tuple(u[1])):
                unknown = set(columns) - SERVER_FIELDS
                if unknown:  # the names go into SQL: only the slot's own columns may
                    raise Inconsistency(f"not fields of a server: {sorted(unknown)}")
                sets = "".join(f"{k} = ?, " for k in columns)
                conn.executemany(
                    f"UPDATE servers SET {sets}updated_at = ? WHERE run_id = ? AND slot = ?",  # noqa: S608
                    [(*merged.values(), c.at, c.run_id, c.slot) for c, merged in group],
                )
            conn.executemany(
                "INSERT INTO audit (at, run_id, actor, event, detail) VALUES (?,?,?,?,?)",
                _audit_rows(applied),
            )
            measurements.save(conn, [found for c in changes for found in c.measured])
        return [c.run_id in cancelled for c in changes]
