"""What a front end needs to show runs and alerts: read them and their phases, record where it
showed them and which notices and replies it already gave (so a restart never repeats one), and
which cards are behind the store (so a crash or an outage never leaves one behind for good);
and what monitoring counts."""

from __future__ import annotations

from datetime import datetime

from pipeline.domain.alerts import Alert
from pipeline.domain.measured import RunImage, RunOptions
from pipeline.domain.models import Run, RunKind, RunState
from pipeline.domain.phases import Part, ThreadReply, story
from pipeline.state import measured, monitor
from pipeline.state.cards import UNPOSTABLE, run_revision
from pipeline.state.store import Store


class Display:
    def __init__(self, store: Store) -> None:
        self._store = store

    def run(self, run_id: int) -> Run | None:
        return self._store.run(run_id)

    def run_image(self, run_id: int) -> RunImage | None:
        """The image a refresh run made, if it made one."""
        return measured.image_of(self._store, run_id)

    def run_options(self, run_id: int) -> RunOptions:
        """A run's lifecycle options: --force, a roll's batches and its canary pause."""
        return measured.options_of(self._store, run_id)

    def alert(self, alert_id: int) -> Alert | None:
        return self._store.alerts.get(alert_id)

    def installation(self) -> str:
        """This installation's id (two may share a channel: their run ids overlap)."""
        return self._store.install_id

    def run_shown(self, run_id: int, channel: str, shown_as: str) -> None:
        self._store.set_shown(run_id, channel, shown_as)

    def alert_shown(self, alert_id: int, channel: str, shown_as: str) -> None:
        self._store.alerts.set_shown(alert_id, channel, shown_as)

    # cards behind the store -------------------------------------------------------------

    def run_card_current(self, run: Run, now: datetime, *, settled: bool) -> None:
        """The card of ``run`` (as read from the store) now shows it; settled when the run is
        finished and every thread reply it needs is given."""
        self._store.cards.record_run(run.id, run_revision(run), now, settled=settled)

    def run_card_unpostable(self, run_id: int, now: datetime) -> None:
        """The front end may not show this run's card: stop retrying it on every sweep."""
        self._store.cards.record_run(run_id, UNPOSTABLE, now, settled=True)

    def runs_behind(self) -> list[Run]:
        """Shown runs whose card is not what the store says, or is missing a reply."""
        behind = []
        for run_id, shown in self._store.cards.unsettled_runs():
            run = self._store.run(run_id)
            if run is not None and (shown != run_revision(run) or run.state.terminal):
                behind.append(run)
        return behind

    def alert_card_current(self, alert: Alert, now: datetime) -> None:
        self._store.cards.record_alert(alert, now)

    def alerts_behind(self) -> list[Alert]:
        """Alerts with a channel whose card is missing or shows an older state."""
        found = (self._store.alerts.get(alert_id) for alert_id in self._store.cards.alerts_behind())
        return [a for a in found if a is not None]

    def phases(self, run: Run) -> tuple[Part, ...]:
        """The run's step story so far (a roll's by batch), derived from what the store
        recorded (its step events folded in SQL, not read one by one)."""
        options = self.run_options(run.id) if run.kind == RunKind.ROLL else None
        log = self._store.history.step_log(run.id, slots=options is not None)
        return story(run, log, options)

    def thread_replies(self, run_id: int) -> dict[str, ThreadReply]:
        """Replies posted about the run, and those about to be (see ``reply_intended``)."""
        return self._store.history.thread_replies(run_id)

    def reply_intended(self, run_id: int, what: str, text: str, now: datetime) -> None:
        """Recorded before a reply is posted, so a crash before ``reply_shown`` is noticed."""
        self._store.history.record_intent(run_id, what, text, now)

    def reply_shown(self, run_id: int, what: str, shown_as: str, text: str, now: datetime) -> None:
        self._store.history.record_reply(run_id, what, shown_as, text, now)

    # what monitoring counts -------------------------------------------------------------

    def runs_by_kind_and_state(self) -> dict[tuple[RunKind, RunState], int]:
        return monitor.runs_by_kind_and_state(self._store)

    def unresolved_alerts(self) -> list[Alert]:
        return self._store.alerts.unresolved()

    def last_scan(self) -> datetime | None:
        return monitor.last_scan(self._store)
