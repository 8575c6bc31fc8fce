"""Wording both front ends share: the shell prints it, Slack puts it into Block Kit."""

from __future__ import annotations

from pipeline.domain.phases import Batch, Part, Phase

COMMAND = "/byoi"


def usage_line(usage: str) -> str:
    """How to type a command, from the pipeline's usage line (which names the command only)."""
    return f"{COMMAND} {usage}"


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
