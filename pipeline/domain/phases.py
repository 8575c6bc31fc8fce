"""A run's step story: one phase per step, summed over its servers from the recorded history.

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

from pipeline.domain.models import (
    SCALE_DOWN_STEPS,
    SCALE_UP_STEPS,
    STEPS,
    Run,
    RunKind,
    RunServer,
    ServerStatus,
    Step,
    steps_of,
)

_SCRUBBED = re.compile(r"^scrubbed (\d+):")


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
    def finished(self) -> bool:
        return self.ended_at is not None

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class ThreadReply:
    """A reply a front end posted about a run (a phase line), where, and the text it shows."""

    what: str
    shown_as: str
    text: str


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
