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
        """Every step boundary of the run's servers, oldest first (a run's own `failed` or
        `cancelled` has its reason as detail, a server's a JSON object naming the slot)."""
        marks = ",".join("?" * len(_EVENTS))
        rows = self.database.rows(
            f"""SELECT at, event, detail FROM audit
            WHERE run_id = ? AND actor = 'byoi' AND event IN ({marks})
            AND detail LIKE '{{%' ORDER BY id""",  # noqa: S608
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
