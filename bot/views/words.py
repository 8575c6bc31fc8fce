"""The words both surfaces use: how a command is typed, states, verbs, versions, ages, times,
durations and phase lines. Each is said here once; the views compose them into sentences."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cache

from bot.views.marks import PLAIN, Marks
from pipeline.domain.models import RunKind, RunServer
from pipeline.domain.phases import Batch, Part, Phase
from pipeline.domain.staleness import Staleness

COMMAND = "/byoi"
NO_APPS = "No apps configured."
NO_RUNS = "No runs yet."
NO_ALERTS = "No stale-image alerts."
FRESH = "fresh"
VERBS = {
    RunKind.SCALE_UP: "scale up",
    RunKind.SCALE_DOWN: "scale down",
    RunKind.REFRESH: "refresh image from a server",
    RunKind.BAKE: "bake image",
    RunKind.ROLL: "roll",
    RunKind.PRUNE: "prune images",
}


def usage_line(usage: str) -> str:
    """How to type a command, from the pipeline's usage line (which names the command only)."""
    return f"{COMMAND} {usage}"


@cache
def state_words(state: StrEnum) -> str:
    """A run's, server's or alert's state in plain words: `awaiting approval`."""
    return state.value.replace("_", " ")


def verb(kind: RunKind) -> str:
    """What a run of ``kind`` does: `scale up`, `bake image`, `roll`."""
    return VERBS[kind]


def unit(kind: RunKind) -> str:
    """What a run's counts count: images for a prune, servers otherwise."""
    return "image(s)" if kind == RunKind.PRUNE else "server(s)"


def versions_line(versions: Mapping[str, str]) -> str:
    """Measured or declared versions: `operating_system ubuntu2204, ruby_version 3.2.2`."""
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "none recorded"


@dataclass(frozen=True)
class Freshness:
    """Whether an image is fresh and, if not, what is wrong with it."""

    problems: tuple[str, ...]

    @property
    def stale(self) -> bool:
        return bool(self.problems)

    def verdict(self, warning: str = "", m: Marks = PLAIN) -> str:
        """`fresh`, or what is wrong (after ``warning``, a surface's sign when it shows one)."""
        if not self.problems:
            return FRESH
        said = m.text("; ".join(self.problems))
        return f"{warning} {said}" if warning else said


def freshness(staleness: Staleness | None) -> Freshness:
    return Freshness(tuple(f.detail for f in staleness.findings) if staleness else ())


def days_old(days: int | None) -> str:
    return "age unknown" if days is None else f"{days} days old"


def day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def moment(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def expiry(at: datetime | None) -> str:
    """When an approval request expires: `09:30 UTC`, or `never`."""
    return at.strftime("%H:%M UTC") if at else "never"


def server_name(server: RunServer) -> str:
    """A run's server by its provider id once it has one, else by its key."""
    return server.provider_id or server.key


def duration(seconds: float) -> str:
    """A step's length as people say it: `12 s`, `3 min 5 s`, `1 h 2 min`."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def phase_line(phase: Phase) -> str:
    """One phase of a run: `scrub · 3/3 done · 12 s · removed 7 paths on each`."""
    parts = [phase.name, f"{phase.done}/{phase.servers} done"]
    if phase.failed:
        parts.append(f"{phase.failed} failed")
    if phase.stopped:
        parts.append(f"{phase.stopped} stopped")
    if phase.seconds is None:
        parts.append(f"{phase.working} in progress")
    else:
        parts.append(duration(phase.seconds))
    if phase.removed:
        parts.append(_removed(phase.removed))
    parts.extend(phase.notes[:3])
    if len(phase.notes) > 3:
        parts.append(f"…and {len(phase.notes) - 3} more")
    return " · ".join(parts)


def part_line(part: Part) -> str:
    """A phase's line, or a roll batch's."""
    return batch_line(part) if isinstance(part, Batch) else phase_line(part)


def batch_line(batch: Batch) -> str:
    """One batch of a roll: `batch 2/4 · 3/3 new up · 3/3 old removed · 48 s`."""
    parts = [batch.name]
    if batch.canary:
        parts.append("canary")
    parts.append(f"{batch.up}/{batch.pairs} new up")
    if batch.failed:
        parts.append(f"{batch.failed} failed")
    if batch.rolled_back:
        parts.append(f"{batch.rolled_back} rolled back")
    parts.append(f"{batch.removed}/{batch.pairs} old removed")
    if batch.kept:
        parts.append(f"{batch.kept} old kept in service")
    if batch.paused:
        parts.append("paused: waiting for Continue or Roll back")
    elif batch.seconds is not None:
        parts.append(duration(batch.seconds))
    elif batch.working:
        parts.append(", ".join(f"{count} in {step.value}" for step, count in batch.working))
    else:
        parts.append("in progress")
    return " · ".join(parts)


def _removed(counts: tuple[int, ...]) -> str:
    low, high = min(counts), max(counts)
    paths = "path" if high == 1 else "paths"
    if len(counts) == 1:
        return f"removed {high} {paths}"
    if low == high:
        return f"removed {high} {paths} on each"
    return f"removed {low}–{high} paths each"
