"""A run's step history, read from its audit log, and the thread replies shown about it."""

from __future__ import annotations

import json
from datetime import datetime

from pipeline.domain.models import Step
from pipeline.domain.phases import StepEvent, StepEventKind, ThreadReply
from pipeline.state.database import Database

# The audit events the runner writes at step boundaries (see execution/runner.py), and the
# step each report belongs to.
_REPORTS = {"scrub_output": Step.SCRUB, "snapshot_created": Step.SNAPSHOT}
_STOPS = ("failed", "cancelled")
_EVENTS: dict[str, tuple[StepEventKind, Step | None]] = {
    **{f"{s}_started": (StepEventKind.STARTED, s) for s in Step},
    **{f"{s}_done": (StepEventKind.DONE, s) for s in Step},
    **{name: (StepEventKind.NOTE, step) for name, step in _REPORTS.items()},
    **dict.fromkeys(_STOPS, (StepEventKind.STOPPED, None)),
}


class RunHistory:
    def __init__(self, database: Database) -> None:
        self.database = database

    def step_events(self, run_id: int) -> list[StepEvent]:
        """Every step boundary of the run's servers, oldest first."""
        marks = ",".join("?" * len(_EVENTS))
        rows = self.database.rows(
            f"""SELECT at, event, detail FROM audit
            WHERE run_id = ? AND actor = 'byoi' AND event IN ({marks}) ORDER BY id""",  # noqa: S608
            [run_id, *_EVENTS],
        )
        events = []
        for row in rows:
            detail = json.loads(row["detail"] or "{}")
            kind, step = _EVENTS[row["event"]]
            events.append(
                StepEvent(
                    slot=int(detail["slot"]),
                    kind=kind,
                    step=step,
                    at=datetime.fromisoformat(row["at"]),
                    note=str(detail.get("note", "")),
                )
            )
        return events

    def thread_replies(self, run_id: int) -> dict[str, ThreadReply]:
        """Replies posted about the run that can be edited (those with a reference)."""
        rows = self.database.rows(
            "SELECT what, shown_as, text FROM replies WHERE run_id = ? AND shown_as IS NOT NULL",
            [run_id],
        )
        return {r["what"]: ThreadReply(r["what"], r["shown_as"], r["text"] or "") for r in rows}

    def record_reply(self, run_id: int, what: str, shown_as: str, text: str, now: datetime) -> None:
        """Record a reply as posted, or the text it was last edited to."""
        with self.database.write() as conn:
            conn.execute(
                """INSERT INTO replies (run_id, what, at, shown_as, text) VALUES (?,?,?,?,?)
                ON CONFLICT (run_id, what) DO UPDATE SET shown_as = excluded.shown_as,
                text = excluded.text""",
                [run_id, what, now.isoformat(), shown_as, text],
            )
