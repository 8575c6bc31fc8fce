"""Server slots' step records: many servers' changes share a transaction (group commit).

A large parallel run has every server reach a step boundary at once. Each boundary is one
change of the slot (the step's end, what it reported, the next step's start) together with the
run's cancel check; changes queued while a transaction commits go into the next one
(state/groupcommit.py), and each writer returns only once its own change is committed.

Within a transaction, the changes of one shape (the same events setting the same fields) are
written together: one UPDATE of the servers and one audit row per event, whatever their number,
so a cohort of a thousand servers costs a step a handful of statements, not thousands.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from pipeline.domain.models import ServerStatus
from pipeline.errors import Inconsistency
from pipeline.state import measurements, runrows
from pipeline.state.database import Database
from pipeline.state.groupcommit import GroupCommit
from pipeline.state.measurements import Found

SERVER_FIELDS = frozenset(
    ("status", "step", "provider_id", "registered", "reason", "cleanup", "note")
)

ServerEvent = tuple[str, Mapping[str, Any]]
"""An audited change of a server slot: the event's name and the fields it sets."""


class SlotChange(NamedTuple):
    """One step boundary of a slot: ``events`` (each a change of the slot's fields, audited as
    one event), then ``unless_cancelled`` if the run's cancel was not requested, and the
    versions a probe ``measured`` (stored with the probe's end). A tuple: a cohort makes a
    thousand at every step."""

    run_id: int
    slot: int
    at: str
    events: tuple[ServerEvent, ...]
    unless_cancelled: tuple[ServerEvent, ...] = ()
    measured: tuple[Found, ...] = ()


Shape = tuple[tuple[str, tuple[str, ...]], ...]
"""The events of a change, each as its name and the fields it sets."""


@dataclass
class _Group:
    """Changes of one run and time with the same shape, each of another slot: written with a
    statement per table and event, whatever their number (a cohort's thousand servers reaching
    a step boundary together are one group)."""

    run_id: int
    at: str
    shape: Shape
    slots: list[int] = field(default_factory=list)
    events: list[Sequence[ServerEvent]] = field(default_factory=list)
    """Each slot's events, as ``slots``."""
    _shared: dict[int, bool] = field(default_factory=dict)

    def shared(self, position: int) -> bool:
        """Whether the event at ``position`` is the same for every slot (one mapping of fields,
        as a cohort's step start or end is): then its fields are set with one value."""
        known = self._shared.get(position)
        if known is None:
            first = self.events[0][position][1]
            known = self._shared[position] = all(e[position][1] is first for e in self.events)
        return known


def _groups(applied: Sequence[tuple[SlotChange, Sequence[ServerEvent]]]) -> list[_Group]:
    """The write's changes by shape. A slot with several changes in one write (never from the
    runner, which waits for each of its writes) has them in later rounds, so its own order
    holds; the order among slots is no matter."""
    groups: dict[tuple[Any, ...], _Group] = {}
    rounds: dict[tuple[int, int], int] = {}
    for change, events in applied:
        shape = tuple([(name, tuple(fields)) for name, fields in events])
        ahead = rounds.get((change.run_id, change.slot), 0)
        rounds[change.run_id, change.slot] = ahead + 1
        key = (ahead, change.run_id, change.at, shape)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(change.run_id, change.at, shape)
        group.slots.append(change.slot)
        group.events.append(events)
    return [groups[key] for key in sorted(groups, key=lambda k: int(k[0]))]


def _update(conn: sqlite3.Connection, group: _Group) -> None:
    """Set the slots' fields, each to what its last event says: one statement for the group."""
    last: dict[str, int] = {}  # a field and the event that sets it last
    for position, (_, names) in enumerate(group.shape):
        for name in names:
            last[name] = position
    unknown = set(last) - SERVER_FIELDS
    if unknown:  # the names go into SQL: only the slot's own columns may
        raise Inconsistency(f"not fields of a server: {sorted(unknown)}")
    shared = {position: group.shared(position) for position in set(last.values())}
    same = [name for name, position in last.items() if shared[position]]
    own = [name for name, position in last.items() if not shared[position]]
    sets = "".join(f"{name} = ?, " for name in (*same, *own))
    values = [group.events[0][last[name]][1][name] for name in same]
    if not own:
        conn.execute(
            f"""UPDATE servers SET {sets}updated_at = ? WHERE run_id = ?
            AND slot IN (SELECT value FROM json_each(?))""",  # noqa: S608
            [*values, group.at, group.run_id, json.dumps(group.slots)],
        )
        return
    conn.executemany(
        f"UPDATE servers SET {sets}updated_at = ? WHERE run_id = ? AND slot = ?",  # noqa: S608
        [
            (*values, *(events[last[name]][1][name] for name in own), group.at, group.run_id, slot)
            for slot, events in zip(group.slots, group.events, strict=True)
        ],
    )


def _audit(conn: sqlite3.Connection, group: _Group) -> None:
    """One audit row per event of the group, in the order of each slot's events. A row names
    its slot (``"slot": 2``) or, for slots that reached the event together, all of them
    (``"slots": [1, 2, 3]``): then a field the slots set alike has its value, and a field each
    has its own (a script's report, a server id) has the list of their values, in the order of
    ``slots``. A thousand servers reaching a step together write one row per event, not a
    thousand (state/history.py reads both kinds)."""
    conn.executemany(
        "INSERT INTO audit (at, run_id, actor, event, detail) VALUES (?,?,?,?,?)",
        [
            (group.at, group.run_id, "byoi", event, _detail(group, position))
            for position, (event, _) in enumerate(group.shape)
        ],
    )


def _detail(group: _Group, position: int) -> str:
    fields = group.events[0][position][1]
    if len(group.slots) == 1:
        return json.dumps({"slot": group.slots[0], **{k: _value(v) for k, v in fields.items()}})
    if group.shared(position):
        return json.dumps({"slots": group.slots, **{k: _value(v) for k, v in fields.items()}})
    each = {name: [_value(events[position][1][name]) for events in group.events] for name in fields}
    return json.dumps({"slots": group.slots, **{k: _one_or_each(v) for k, v in each.items()}})


def _one_or_each(values: list[Any]) -> Any:
    """A field of many slots: its value if every slot has the same, else each one's in a list."""
    first = values[0]
    return first if all(v == first for v in values) else values


def _value(value: Any) -> Any:
    """A field as JSON has it: true, 3, null as such; anything else as its text, cut short."""
    if type(value) is str:  # a script's report, a server id: most values, a thousand at a time
        return value[:4000]
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
        rows = self.database.tuples(
            "SELECT status, reason FROM servers WHERE run_id = ? ORDER BY slot", [run_id]
        )
        return [(runrows.STATUS_OF[value], reason) for value, reason in rows]

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
            for group in _groups(applied):
                _update(conn, group)
                _audit(conn, group)
            measurements.save(conn, [found for c in changes for found in c.measured])
        return [c.run_id in cancelled for c in changes]
