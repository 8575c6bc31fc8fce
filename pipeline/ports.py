"""What the pipeline needs from outside: providers by name, a notifier, a meter, a clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from pipeline.domain.models import Run, Step
from providers.base import Provider

Clock = Callable[[], datetime]
ProviderFor = Callable[[str], Provider]


class Notifier(Protocol):
    """Told whenever a run or one of its servers changes; each front end implements it."""

    @property
    def needs_servers(self) -> bool:
        """Whether ``run_changed`` looks at the run's servers (a console prints each one's
        step). One that only queues the run, to read it again when it shows it (a chat
        card), is told with the run alone: a 1,000-server run is not read for nothing at
        every change, on the interpreter its run thread shares."""
        ...

    def run_changed(self, run: Run) -> None: ...


class Meter(Protocol):
    """Told how long each step and each run took; the edges turn it into metrics and log lines.

    ``outcome`` is ``ok``, ``failed`` or ``cancelled`` for a step, the run's final state for a run.
    """

    def step_finished(
        self, run: Run, slot: int, step: Step, provider: str, outcome: str, seconds: float
    ) -> None: ...

    def run_finished(self, run: Run, provider: str, seconds: float) -> None: ...
