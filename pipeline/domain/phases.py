"""A run's step story: one phase per step, summed over its servers from the recorded history;
for a roll, one batch per batch of servers it replaces.

A phase is derived, never stored: the run's servers and the step events of its audit log
(started, done, a step's report, failed) are enough to say how many servers went through
a step, when the first entered and the last left it, and what the step reported. A restart
derives the same phases again, so whatever shows them can catch up to the final state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


def story(run: Run, events: Sequence[StepEvent], options: RunOptions | None) -> tuple[Part, ...]:
    """What a run's thread tells: a roll's batches (given its options), else its phases."""
    if run.kind == RunKind.ROLL and options is not None:
        return batches(run, events, options)
    return phases(run, events)


def phases(run: Run, events: Sequence[StepEvent]) -> tuple[Phase, ...]:
    """The phases some server has entered, in step order."""
    stopped_at: dict[int, datetime] = {}
    for event in events:
        if event.kind == StepEventKind.STOPPED:
            stopped_at[event.slot] = event.at
    found = []
    # A roll's new servers go through a scale-up's steps, its old ones through a scale-down's.
    kind_steps = SCALE_UP_STEPS + SCALE_DOWN_STEPS if run.kind == RunKind.ROLL else STEPS[run.kind]
    for step in kind_steps:
        own = [e for e in events if e.step == step]
        if any(e.kind == StepEventKind.STARTED for e in own):
            found.append(_phase(run, step, own, stopped_at))
    return tuple(found)


def _phase(run: Run, step: Step, events: list[StepEvent], stopped_at: dict[int, datetime]) -> Phase:
    entered = {e.slot for e in events if e.kind == StepEventKind.STARTED}
    done = {e.slot for e in events if e.kind == StepEventKind.DONE}
    pool = [s for s in run.servers if step in steps_of(run.kind, s.slot)]
    halted = [s for s in pool if _halted_in(s, entered, done)]
    failed = sum(s.status == ServerStatus.FAILED for s in halted)
    never = [s for s in pool if _stopped(s) and s.slot not in entered]
    servers = len(pool) - len(never)
    last = [e.at for e in events if e.kind == StepEventKind.DONE]
    last += [stopped_at[s.slot] for s in halted if s.slot in stopped_at]
    over = len(done) + len(halted) >= servers or run.state.terminal
    notes = sorted((e.slot, e.note) for e in events if e.kind == StepEventKind.NOTE and e.note)
    removed = tuple(int(m.group(1)) for _, n in notes if (m := _SCRUBBED.match(n)))
    return Phase(
        step=step,
        servers=servers,
        done=len(done),
        failed=failed,
        stopped=len(halted) - failed,
        working=max(0, len(entered) - len(done) - len(halted)),
        started_at=min(e.at for e in events if e.kind == StepEventKind.STARTED),
        ended_at=max(last or [e.at for e in events]) if over else None,
        removed=removed,
        notes=tuple(n for _, n in notes if not _SCRUBBED.match(n)),
    )


def _halted_in(server: RunServer, entered: set[int], done: set[int]) -> bool:
    """The server entered this step and stopped there (failed or cancelled) before finishing."""
    return _stopped(server) and server.slot in entered and server.slot not in done


def _stopped(server: RunServer) -> bool:
    return server.status.finished and server.status != ServerStatus.DONE


def batches(run: Run, events: Sequence[StepEvent], options: RunOptions) -> tuple[Batch, ...]:
    """The batches of a roll some server has entered, in order (a stopped roll's later
    batches never start)."""
    by_slot = {s.slot: s for s in run.servers}
    layout = roll.batches(len(run.servers) // 2, run.max_parallel, canary=options.canary)
    paused = options.paused and run.state == RunState.RUNNING
    found = []
    for number, pairs in enumerate(layout, start=1):
        slots = {roll.new_slot(p) for p in pairs} | {roll.old_slot(p) for p in pairs}
        own = [e for e in events if e.slot in slots]
        if not any(e.kind == StepEventKind.STARTED for e in own) or not slots <= by_slot.keys():
            continue
        servers = [by_slot[slot] for slot in sorted(slots)]
        canary = options.canary and number == 1
        found.append(_batch(run, (number, len(layout)), servers, own, canary, paused and canary))
    return tuple(found)


def _batch(
    run: Run,
    place: tuple[int, int],
    servers: list[RunServer],
    events: list[StepEvent],
    canary: bool,
    paused: bool,
) -> Batch:
    news = [s for s in servers if roll.is_new(s.slot)]
    olds = [s for s in servers if not roll.is_new(s.slot)]
    working: dict[Step, int] = {}
    for server in servers:
        if server.status == ServerStatus.WORKING and server.step is not None:
            working[server.step] = working.get(server.step, 0) + 1
    over = all(s.status.finished for s in servers) or run.state.terminal
    ends = [e.at for e in events if e.kind in (StepEventKind.DONE, StepEventKind.STOPPED)]
    started = min(e.at for e in events if e.kind == StepEventKind.STARTED)
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
        started_at=started,
        ended_at=max([started, *ends]) if over else None,
    )
