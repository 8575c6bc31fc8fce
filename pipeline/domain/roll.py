"""Rolls: which servers a roll replaces, in which batches, and how its slots pair up.

Slot 2i-1 is the i-th new server and slot 2i the old server it replaces. A batch launches its
new servers first (surge), then drains and terminates its old ones, so the fleet never drops
below its size and never exceeds size + batch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.domain.models import Run, RunServer, ServerStatus

_BATCH = re.compile(r"^([1-9][0-9]{0,3})(%?)$")


def batch_size(text: str | None, count: int) -> int | None:
    """`2` → 2, `50%` → half of ``count`` rounded up (at least 1); None if malformed."""
    if text is None:
        return 1
    match = _BATCH.match(text)
    if not match:
        return None
    value = int(match[1])
    if match[2]:
        if value > 100:
            return None
        return max(1, math.ceil(count * value / 100))
    return value


def batches(count: int, size: int, *, canary: bool) -> list[list[int]]:
    """Pairs (1-based) per batch; with a canary the first batch is one server."""
    pairs = list(range(1, count + 1))
    layout: list[list[int]] = []
    if canary and pairs:
        layout.append(pairs[:1])
        pairs = pairs[1:]
    step = max(1, size)
    layout.extend(pairs[i : i + step] for i in range(0, len(pairs), step))
    return layout


def new_slot(pair: int) -> int:
    return 2 * pair - 1


def old_slot(pair: int) -> int:
    return 2 * pair


def is_new(slot: int) -> bool:
    return slot % 2 == 1


def paused_note(run_id: int, canary: RunServer, versions: Mapping[str, Mapping[str, str]]) -> str:
    """What a roll paused after its canary says: the canary, its health and its versions."""
    server = canary.provider_id or canary.key
    measured = versions.get(canary.provider_id or "", {})
    shown = ", ".join(f"{k} {v}" for k, v in sorted(measured.items())) or "no versions measured"
    return (
        f"paused after the canary: {server} is healthy and registered ({shown}); "
        f"`continue {run_id}` goes on, `cancel {run_id}` rolls the canary back"
    )


def progress(run: Run, batch_size: int, canary: bool) -> str:
    """`batch 2 of 3 · old 2 → new 2`: old servers left in service, new ones in service."""
    pairs = len(run.servers) // 2
    by_slot = {s.slot: s for s in run.servers}
    layout = batches(pairs, batch_size, canary=canary)
    done = ServerStatus.DONE
    new = sum(by_slot[new_slot(p)].status == done for p in range(1, pairs + 1))
    old = sum(by_slot[old_slot(p)].status != done for p in range(1, pairs + 1))
    # The first batch with an old server still in place; once all are settled, the last
    # batch that began (a stopped roll's later batches never launch: their new slots skipped).
    began = [
        i
        for i, batch in enumerate(layout, start=1)
        if any(by_slot[new_slot(p)].status != ServerStatus.SKIPPED for p in batch)
    ]
    current = next(
        (
            i
            for i, batch in enumerate(layout, start=1)
            if any(not by_slot[old_slot(p)].status.finished for p in batch)
        ),
        began[-1] if began else 1,
    )
    return f"batch {current} of {len(layout)} · old {old} → new {new} (of {pairs})"


@dataclass(frozen=True)
class Tally:
    """A roll's replacements (a new server and the old one it replaces) by how they ended:
    what a roll's end says, in servers replaced rather than in slots (two per server)."""

    pairs: int
    replaced: int
    failed: int
    rolled_back: int
    """New servers taken back with their batch (or by a cancel); their old ones kept."""
    not_started: int

    def words(self) -> str:
        """`3 of 10 server(s) replaced, 1 failed, 2 rolled back with their batch, 4 not
        started` (the parts that are not zero)."""
        parts = [f"{self.replaced} of {self.pairs} server(s) replaced"]
        parts += [f"{self.failed} failed"] if self.failed else []
        parts += [f"{self.rolled_back} rolled back with their batch"] if self.rolled_back else []
        parts += [f"{self.not_started} not started"] if self.not_started else []
        return ", ".join(parts)


def tally(statuses: Sequence[ServerStatus]) -> Tally:
    """The replacements of a roll whose slots ended with ``statuses``, in slot order."""
    news, olds = statuses[0::2], statuses[1::2]
    pairs = list(zip(news, olds, strict=False))
    failed = sum(ServerStatus.FAILED in pair for pair in pairs)
    return Tally(
        pairs=len(pairs),
        replaced=sum(new == old == ServerStatus.DONE for new, old in pairs),
        failed=failed,
        rolled_back=sum(
            new == ServerStatus.CANCELLED and old != ServerStatus.FAILED for new, old in pairs
        ),
        not_started=sum(
            new == ServerStatus.SKIPPED and old != ServerStatus.FAILED for new, old in pairs
        ),
    )
