"""A run's step story: one phase per step, summed over its servers from the recorded history;
for a roll, one batch per batch of servers it replaces.

A phase is derived, never stored: the run's servers and the step events of its audit log
(started, done, a step's report, failed) are enough to say how many servers went through
a step, when the first entered and the last left it, and what the step reported. A restart
derives the same phases again, so whatever shows them can catch up to the final state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pipeline.domain import roll
from pipeline.domain.measured import RunOptions
from pipeline.domain.models import (
    SCALE_DOWN_STEPS,
    SCALE_UP_STEPS,
    STEPS,
    Run,
    RunKind,
    RunServer,
    RunState,
    ServerStatus,
    Step,
    steps_of,
)

_SCRUBBED = re.compile(r"^scrubbed (\d+):")
_TAKEN_BACK = (ServerStatus.CANCELLED, ServerStatus.SKIPPED)


class StepEventKind(StrEnum):
    STARTED = "started"
    DONE = "done"
    NOTE = "note"
    """What a step reported (scrub's removals, the image a snapshot made)."""
    STOPPED = "stopped"
    """The server failed or was cancelled (its step is the one it was in)."""


@dataclass(frozen=True)
class StepEvent:
    slot: int
    kind: StepEventKind
    step: Step | None
    """None for STOPPED: the server's own step says where it stopped."""
    at: datetime
    note: str = ""


@dataclass(frozen=True)
class Span:
    """Events of one kind for one step: the slots they name, the first and the last."""

    slots: frozenset[int]
    first: datetime
    last: datetime


@dataclass(frozen=True)
class SlotTimes:
    """One server's first step start and its last step end (done or stopped), if any."""

    started: datetime | None
    ended: datetime | None


@dataclass(frozen=True)
class StepLog:
    """A run's step events folded to what its phases and batches read: per step, who
    started, finished and reported it and when; when each stopped server stopped; per server
    (for a roll's batches only) when it first started and last ended a step. The store builds
    it in SQL (see ``RunHistory.step_log``); ``of`` folds events in memory to the same."""

    started: Mapping[Step, Span]
    done: Mapping[Step, Span]
    noted: Mapping[Step, Span]
    """Every report event, with or without a note (they count for when a step ended)."""
    notes: Mapping[Step, tuple[tuple[int, str], ...]]
    """The non-empty reports, as (slot, note) in slot order."""
    stopped_at: Mapping[int, datetime]
    """When each stopped server stopped (its latest stop)."""
    slots: Mapping[int, SlotTimes] | None
    """None unless asked for (a roll's batches need them)."""

    @classmethod
    def of(cls, events: Iterable[StepEvent]) -> StepLog:
        by_kind: dict[tuple[StepEventKind, Step], list[StepEvent]] = {}
        notes: dict[Step, list[tuple[int, str]]] = {}
        stopped_at: dict[int, datetime] = {}
        firsts: dict[int, datetime] = {}
        lasts: dict[int, datetime] = {}
        for e in events:
            if e.kind == StepEventKind.STOPPED:
                stopped_at[e.slot] = e.at
            elif e.step is not None:
                by_kind.setdefault((e.kind, e.step), []).append(e)
            if e.kind == StepEventKind.NOTE and e.note and e.step is not None:
                notes.setdefault(e.step, []).append((e.slot, e.note))
            if e.kind == StepEventKind.STARTED:
                firsts[e.slot] = min(firsts.get(e.slot, e.at), e.at)
            elif e.kind in (StepEventKind.DONE, StepEventKind.STOPPED):
                lasts[e.slot] = max(lasts.get(e.slot, e.at), e.at)

        def spans(kind: StepEventKind) -> dict[Step, Span]:
            return {step: _span(own) for (k, step), own in by_kind.items() if k == kind}

        return cls(
            started=spans(StepEventKind.STARTED),
            done=spans(StepEventKind.DONE),
            noted=spans(StepEventKind.NOTE),
            notes={step: tuple(sorted(pairs)) for step, pairs in notes.items()},
            stopped_at=stopped_at,
            slots={slot: SlotTimes(firsts.get(slot), lasts.get(slot)) for slot in firsts | lasts},
        )


def _span(events: list[StepEvent]) -> Span:
    times = [e.at for e in events]
    return Span(frozenset(e.slot for e in events), min(times), max(times))


@dataclass(frozen=True)
class Phase:
    """One step of a run, over all the servers that go through it."""

    step: Step
    servers: int
    """Servers that go (or went) through this step: all but those that stopped before it."""
    done: int
    failed: int
    stopped: int
    """Cancelled or cut short in this step without failing."""
    working: int
    started_at: datetime
    ended_at: datetime | None
    """When the last server left the step; None while one is in it or still to enter it."""
    removed: tuple[int, ...] = ()
    """Paths scrub removed, per server that reported."""
    notes: tuple[str, ...] = ()
    """Other reports of the step (the image a snapshot made), in slot order."""

    @property
    def name(self) -> str:
        return self.step.value

    @property
    def key(self) -> str:
        """What names its thread reply."""
        return f"phase:{self.name}"

    @property
    def finished(self) -> bool:
        return self.ended_at is not None

    @property
    def troubled(self) -> bool:
        """Some server failed or stopped in it."""
        return bool(self.failed or self.stopped)

    @property
    def paused(self) -> bool:
        return False

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class Batch:
    """One batch of a roll: its new servers through a scale-up's steps (surge first), then the
    old servers they replace through a scale-down's."""

    number: int
    batches: int
    """How many batches the roll has."""
    pairs: int
    """New servers the batch brings up, and old ones it removes."""
    canary: bool
    up: int
    """New servers in service."""
    removed: int
    """Old servers drained and terminated."""
    failed: int
    """Servers of the batch (new or old) that failed."""
    rolled_back: int
    """New servers taken out again (the batch stopped, or a cancel) or never started."""
    kept: int
    """Old servers left in service because the batch stopped."""
    working: tuple[tuple[Step, int], ...]
    """How many of its servers are in each step right now, in step order."""
    paused: bool
    """Waiting after the canary for someone to continue the roll or roll it back."""
    started_at: datetime
    ended_at: datetime | None
    """When its last server finished; None while one is still to finish."""

    @property
    def name(self) -> str:
        return f"batch {self.number}/{self.batches}"

    @property
    def key(self) -> str:
        return f"batch:{self.number}"

    @property
    def finished(self) -> bool:
        return self.ended_at is not None

    @property
    def troubled(self) -> bool:
        return bool(self.failed or self.rolled_back or self.kept)

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())


Part = Phase | Batch
"""One reply of a run's thread story."""


@dataclass(frozen=True)
class ThreadReply:
    """A reply a front end posts about a run, where it is and the text it shows.

    Recorded before it is posted (``posted`` False, no ``shown_as``): after a crash in between,
    the front end looks for it where it would be before it posts it again."""

    what: str
    shown_as: str | None
    text: str
    posted: bool = True


Events = Sequence[StepEvent] | StepLog
"""A run's step events, one by one or already folded."""


def _log(events: Events) -> StepLog:
    return events if isinstance(events, StepLog) else StepLog.of(events)


def story(run: Run, events: Events, options: RunOptions | None) -> tuple[Part, ...]:
    """What a run's thread tells: a roll's batches (given its options), else its phases."""
    if run.kind == RunKind.ROLL and options is not None:
        return batches(run, events, options)
    return phases(run, events)


def phases(run: Run, events: Events) -> tuple[Phase, ...]:
    """The phases some server has entered, in step order."""
    log = _log(events)
    # A roll's new servers go through a scale-up's steps, its old ones through a scale-down's.
    kind_steps = SCALE_UP_STEPS + SCALE_DOWN_STEPS if run.kind == RunKind.ROLL else STEPS[run.kind]
    stopped = frozenset(s.slot for s in run.servers if _stopped(s))
    return tuple(_phase(run, step, log, stopped) for step in kind_steps if step in log.started)


def _phase(run: Run, step: Step, log: StepLog, stopped: frozenset[int]) -> Phase:
    """``stopped``: the slots of the servers that failed or were cancelled."""
    began = log.started[step]
    finished = log.done.get(step)
    entered, done = began.slots, finished.slots if finished else frozenset[int]()
    pool = _pool(run, step)
    # Halted: entered this step and stopped there (failed or cancelled) before finishing it.
    ended = [s for s in pool if s.slot in stopped] if stopped else []
    halted = [s for s in ended if s.slot in entered and s.slot not in done]
    failed = sum(s.status == ServerStatus.FAILED for s in halted)
    never = [s for s in ended if s.slot not in entered]
    servers = len(pool) - len(never)
    last = [finished.last] if finished else []
    last += [log.stopped_at[s.slot] for s in halted if s.slot in log.stopped_at]
    spans = [span for span in (began, finished, log.noted.get(step)) if span is not None]
    over = len(done) + len(halted) >= servers or run.state.terminal
    notes = log.notes.get(step, ())
    removed = tuple(int(m.group(1)) for _, n in notes if (m := _SCRUBBED.match(n)))
    return Phase(
        step=step,
        servers=servers,
        done=len(done),
        failed=failed,
        stopped=len(halted) - failed,
        working=max(0, len(entered) - len(done) - len(halted)),
        started_at=began.first,
        ended_at=max(last or [span.last for span in spans]) if over else None,
        removed=removed,
        notes=tuple(n for _, n in notes if not _SCRUBBED.match(n)),
    )


def _pool(run: Run, step: Step) -> Sequence[RunServer]:
    """The servers of ``run`` whose steps include ``step``: all of them or none, but for a
    roll's (its new servers' steps are not its old ones')."""
    if run.kind != RunKind.ROLL:
        return run.servers if step in STEPS[run.kind] else ()
    return [s for s in run.servers if step in steps_of(run.kind, s.slot)]


def _stopped(server: RunServer) -> bool:
    return server.status.finished and server.status != ServerStatus.DONE


def batches(run: Run, events: Events, options: RunOptions) -> tuple[Batch, ...]:
    """The batches of a roll some server has entered, in order (a stopped roll's later
    batches never start)."""
    times = _log(events).slots
    if times is None:
        raise ValueError("a roll's batches need each server's times (StepLog.slots)")
    by_slot = {s.slot: s for s in run.servers}
    layout = roll.batches(len(run.servers) // 2, run.max_parallel, canary=options.canary)
    paused = options.paused and run.state == RunState.RUNNING
    found = []
    for number, pairs in enumerate(layout, start=1):
        slots = {roll.new_slot(p) for p in pairs} | {roll.old_slot(p) for p in pairs}
        own = [times[slot] for slot in slots if slot in times]
        starts = [t.started for t in own if t.started is not None]
        if not starts or not slots <= by_slot.keys():
            continue
        ends = [t.ended for t in own if t.ended is not None]
        servers = [by_slot[slot] for slot in sorted(slots)]
        canary = options.canary and number == 1
        span = (min(starts), max([min(starts), *ends]))
        found.append(_batch(run, (number, len(layout)), servers, span, canary, paused and canary))
    return tuple(found)


def _batch(
    run: Run,
    place: tuple[int, int],
    servers: list[RunServer],
    span: tuple[datetime, datetime],
    canary: bool,
    paused: bool,
) -> Batch:
    """A batch of ``servers`` whose first started at ``span[0]`` and last ended at ``span[1]``."""
    news = [s for s in servers if roll.is_new(s.slot)]
    olds = [s for s in servers if not roll.is_new(s.slot)]
    working: dict[Step, int] = {}
    for server in servers:
        if server.status == ServerStatus.WORKING and server.step is not None:
            working[server.step] = working.get(server.step, 0) + 1
    over = all(s.status.finished for s in servers) or run.state.terminal
    return Batch(
        number=place[0],
        batches=place[1],
        pairs=len(news),
        canary=canary,
        up=sum(s.status == ServerStatus.DONE for s in news),
        removed=sum(s.status == ServerStatus.DONE for s in olds),
        failed=sum(s.status == ServerStatus.FAILED for s in servers),
        rolled_back=sum(s.status in _TAKEN_BACK for s in news),
        kept=sum(s.status in _TAKEN_BACK for s in olds),
        working=tuple((step, working[step]) for step in Step if step in working),
        paused=paused and not over,
        started_at=span[0],
        ended_at=span[1] if over else None,
    )
