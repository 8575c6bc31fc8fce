"""What a front end needs to show runs and alerts: read them and their phases, and record where
it showed them and which notices and replies it already gave (so a restart never repeats one)."""

from __future__ import annotations

from datetime import datetime

from pipeline.domain.alerts import Alert
from pipeline.domain.models import Run
from pipeline.domain.phases import Phase, ThreadReply, phases
from pipeline.state.store import Store


class Display:
    def __init__(self, store: Store) -> None:
        self._store = store

    def run(self, run_id: int) -> Run | None:
        return self._store.run(run_id)

    def alert(self, alert_id: int) -> Alert | None:
        return self._store.alerts.get(alert_id)

    def run_shown(self, run_id: int, channel: str, shown_as: str) -> None:
        self._store.set_shown(run_id, channel, shown_as)

    def alert_shown(self, alert_id: int, channel: str, shown_as: str) -> None:
        self._store.alerts.set_shown(alert_id, channel, shown_as)

    def notices(self, run_id: int) -> set[str]:
        return self._store.notices(run_id)

    def record_notice(self, run_id: int, what: str, now: datetime) -> None:
        self._store.record_notice(run_id, what, now)

    def phases(self, run: Run) -> tuple[Phase, ...]:
        """The run's step story so far, derived from what the store recorded."""
        return phases(run, self._store.history.step_events(run.id))

    def thread_replies(self, run_id: int) -> dict[str, ThreadReply]:
        return self._store.history.thread_replies(run_id)

    def reply_shown(self, run_id: int, what: str, shown_as: str, text: str, now: datetime) -> None:
        self._store.history.record_reply(run_id, what, shown_as, text, now)
