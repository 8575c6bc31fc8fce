"""What every use case works on: the configuration, the store, the providers and the runner."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config.model import Config
from pipeline.execution.runner import Runner
from pipeline.ports import ProviderFor
from pipeline.state.store import Store


@dataclass(frozen=True)
class Context:
    config: Config
    store: Store
    provider_for: ProviderFor
    runner: Runner
