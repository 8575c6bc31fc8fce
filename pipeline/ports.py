"""The interfaces the pipeline needs from outside: providers by name, a notifier, a clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from pipeline.domain.models import Run
from providers.base import Provider

Clock = Callable[[], datetime]
ProviderFor = Callable[[str], Provider]


class Notifier(Protocol):
    """Told whenever a run or one of its servers changes; each front end implements it."""

    def run_changed(self, run: Run) -> None: ...
