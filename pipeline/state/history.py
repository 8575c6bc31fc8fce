"""A run's step history, read from its audit log, and the thread replies shown about it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pipeline.domain.models import Step
from pipeline.domain.phases import SlotTimes, Span, StepEvent, StepEventKind, StepLog, ThreadReply
from pipeline.state.database import Database

# The audit events the runner writes at step boundaries (see execution/runner.py), and the
# step each report belongs to.
_REPORTS = {"scrub_output": Step.SCRUB, "snapshot_created": Step.SNAPSHOT}
_STOPS = ("failed", "cancelled")
_ENDING = (StepEventKind.DONE, StepEventKind.STOPPED)
_EVENTS: dict[str, tuple[StepEventKind, Step | None]] = {
    **{f"{s}_started": (StepEventKind.STARTED, s) for s in Step},
    **{f"{s}_done": (StepEventKind.DONE, s) for s in Step},
    **{name: (StepEventKind.NOTE, step) for name, step in _REPORTS.items()},
    **dict.fromkeys(_STOPS, (StepEventKind.STOPPED, None)),
}
_OF_STEP = {name: (kind, step) for name, (kind, step) in _EVENTS.items() if step is not None}
_STARTS = [name for name, (kind, _) in _EVENTS.items() if kind == StepEventKind.STARTED]
_ENDS = [name for name, (kind, _) in _EVENTS.items() if kind in _ENDING]
# A step event: the server's own (a run's `failed`/`cancelled` has its reason as detail).
# `at` is ISO text written by one clock in UTC, so its text order is its time order.
_OWN = "run_id = ? AND actor = 'byoi' AND event IN ({}) AND detail LIKE '{{%'"
# An event of one server names its slot; one that servers reached together (a cohort's step
# start or end, state/steps.py) names them all, and is read as one event of each: json_each
# takes the list, or the one slot. A detail is parsed once per row, not once per slot (a row
# of a thousand slots is long). A run's own event has text, not JSON: it never reaches JSON.
_EACH = """audit LEFT JOIN json_each(
    iif(audit.detail LIKE '{%', audit.detail, '{}'),
    CASE WHEN audit.detail NOT LIKE '{%' THEN '$.slot'
        WHEN json_type(audit.detail, '$.slots') IS NULL THEN '$.slot' ELSE '$.slots' END
) AS many"""
_SLOT = "many.value"


class RunHistory:
    def __init__(self, database: Database) -> None:
        self.database = database

    def step_events(self, run_id: int) -> list[StepEvent]:
        """Every step boundary of the run's servers, oldest first (a run's own `failed` or
        `cancelled` has its reason as detail, a server's a JSON object naming the slot)."""
        marks = ",".join("?" * len(_EVENTS))
        rows = self.database.rows(
            f"""SELECT at, event, detail FROM audit
            WHERE run_id = ? AND actor = 'byoi' AND event IN ({marks})
            AND detail LIKE '{{%' ORDER BY id""",  # noqa: S608
            [run_id, *_EVENTS],
        )
        events: list[StepEvent] = []
        for row in rows:
            detail = json.loads(row["detail"] or "{}")
            kind, step = _EVENTS[row["event"]]
            note = detail.get("note", "")
            events.extend(
                StepEvent(
                    slot=int(slot),
                    kind=kind,
                    step=step,
                    at=datetime.fromisoformat(row["at"]),
                    note=str(note[index] if isinstance(note, list) else note),
                )
                for index, slot in enumerate(detail.get("slots", [detail.get("slot")]))
            )
        return events

    def step_log(self, run_id: int, *, slots: bool = False) -> StepLog:
        """The run's step events folded in SQL (what ``StepLog.of(step_events)`` gives, without
        reading every event): per step and kind a count of slots and the first and last time;
        each server's own times only with ``slots`` (a roll's batches)."""
        spans: dict[StepEventKind, dict[Step, Span]] = {k: {} for k in StepEventKind}
        # A cohort's servers share every step event: the same list of slots, parsed once.
        parsed: dict[str, frozenset[int]] = {}
        for row in self._own(
            f"SELECT event, group_concat({_SLOT}) AS slots, MIN(at) AS first, MAX(at) AS last",
            _OF_STEP,
            run_id,
            "GROUP BY event",
        ):
            kind, step = _OF_STEP[row["event"]]
            listed = row["slots"]
            taken = parsed.get(listed)
            if taken is None:
                taken = parsed[listed] = frozenset(map(int, listed.split(",")))
            spans[kind][step] = Span(taken, _at(row["first"]), _at(row["last"]))
        return StepLog(
            started=spans[StepEventKind.STARTED],
            done=spans[StepEventKind.DONE],
            noted=spans[StepEventKind.NOTE],
            notes=self._notes(run_id),
            stopped_at={
                int(row["slot"]): _at(row["at"])
                for row in self._own(
                    f"SELECT {_SLOT} AS slot, at", _STOPS, run_id, "ORDER BY audit.id"
                )
            },
            slots=self._slot_times(run_id) if slots else None,
        )

    def _notes(self, run_id: int) -> dict[Step, tuple[tuple[int, str], ...]]:
        """Each server's report of the steps that report (a row of many slots lists each
        one's note in the order of its slots, state/steps.py)."""
        found: dict[Step, list[tuple[int, str]]] = {}
        where = _OWN.format(",".join("?" * len(_REPORTS)))
        rows = self.database.rows(
            f"SELECT event, detail FROM audit WHERE {where}",  # noqa: S608
            [run_id, *_REPORTS],
        )
        for row in rows:
            detail = json.loads(row["detail"])
            slots = detail.get("slots", [detail.get("slot")])
            note = detail.get("note")
            notes = note if isinstance(note, list) else [note] * len(slots)
            found.setdefault(_REPORTS[row["event"]], []).extend(
                (int(slot), str(said)) for slot, said in zip(slots, notes, strict=True) if said
            )
        return {step: tuple(sorted(pairs)) for step, pairs in found.items()}

    def _slot_times(self, run_id: int) -> dict[int, SlotTimes]:
        starts, ends = ",".join("?" * len(_STARTS)), ",".join("?" * len(_ENDS))
        rows = self._own(
            f"""SELECT {_SLOT} AS slot,
            MIN(CASE WHEN event IN ({starts}) THEN at END) AS started,
            MAX(CASE WHEN event IN ({ends}) THEN at END) AS ended""",
            _STARTS + _ENDS,
            run_id,
            "GROUP BY slot HAVING started IS NOT NULL OR ended IS NOT NULL",
            leading=[*_STARTS, *_ENDS],
        )
        return {
            int(r["slot"]): SlotTimes(_at_or_none(r["started"]), _at_or_none(r["ended"]))
            for r in rows
        }

    def _own(
        self,
        select: str,
        events: Iterable[str],
        run_id: int,
        tail: str,
        leading: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Rows of ``select`` over the run's own step events named ``events``."""
        names = list(events)
        where = _OWN.format(",".join("?" * len(names)))
        sql = f"{select} FROM {_EACH} WHERE {where} {tail}"
        return self.database.rows(sql, [*leading, run_id, *names])

    def thread_replies(self, run_id: int) -> dict[str, ThreadReply]:
        """Replies given about the run (those recorded before 006 have no reference), and
        those about to be posted (see ``record_intent``)."""
        rows = self.database.rows(
            "SELECT what, shown_as, text, posted FROM replies WHERE run_id = ?", [run_id]
        )
        return {
            r["what"]: ThreadReply(r["what"], r["shown_as"], r["text"] or "", bool(r["posted"]))
            for r in rows
        }

    def record_intent(self, run_id: int, what: str, text: str, now: datetime) -> None:
        """A reply is about to be posted: a crash before ``record_reply`` leaves it unposted
        here, so a restart looks for it in the thread before it posts it again."""
        with self.database.write() as conn:
            conn.execute(
                """INSERT INTO replies (run_id, what, at, text, posted) VALUES (?,?,?,?,0)
                ON CONFLICT (run_id, what) DO UPDATE SET text = excluded.text
                WHERE replies.posted = 0""",
                [run_id, what, now.isoformat(), text],
            )

    def record_reply(self, run_id: int, what: str, shown_as: str, text: str, now: datetime) -> None:
        """Record a reply as posted, or the text it was last edited to."""
        with self.database.write() as conn:
            conn.execute(
                """INSERT INTO replies (run_id, what, at, shown_as, text, posted)
                VALUES (?,?,?,?,?,1)
                ON CONFLICT (run_id, what) DO UPDATE SET shown_as = excluded.shown_as,
                text = excluded.text, posted = 1""",
                [run_id, what, now.isoformat(), shown_as, text],
            )


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _at_or_none(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
