"""What bot/cli.py (the composition root) assembles: providers built lazily, the store, the
runner and the service."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.config.model import Config
from pipeline.errors import UserError
from pipeline.execution.runner import Runner
from pipeline.ports import Clock, Meter, Notifier
from pipeline.services.display import Display
from pipeline.services.service import Service
from pipeline.state.store import Store
from providers.base import Provider, ProviderError


def utcnow() -> datetime:
    return datetime.now(UTC)


class UnavailableProvider(UserError):
    """A provider the configuration uses cannot be built (no credentials, say)."""


class Providers:
    """Builds each provider on first use, so an unused cloud SDK is never imported."""

    def __init__(self, config: Config, wrap: Callable[[Provider], Provider] | None = None) -> None:
        self.config = config
        # serve wraps each provider to count its errors (bot/metrics.py)
        self._wrap = wrap or (lambda provider: provider)
        self._built: dict[str, Provider] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Provider:
        with self._lock:
            if name not in self._built:
                try:
                    self._built[name] = self._wrap(self._build(name))
                except ProviderError as exc:
                    raise UnavailableProvider(f"the {name} provider: {exc.reason}") from exc
            return self._built[name]

    def _build(self, name: str) -> Provider:
        settings = self.config.providers.get(name, {})
        if name == "local":
            from providers.local import LocalProvider

            return LocalProvider(Path(settings["root"]))
        if name == "aws":
            from providers.aws import AwsProvider

            return AwsProvider(settings)
        if name == "gcp":
            from providers.gcp import GcpProvider  # the SDK costs seconds: only when used

            return GcpProvider(
                {"api_endpoint": os.environ.get("BYOI_GCP_API_ENDPOINT"), **settings}
            )
        if name == "digitalocean":
            from providers.digitalocean import DigitalOceanProvider

            ssh_dir = self.config.database.parent / f"{self.config.database.stem}-ssh"
            return DigitalOceanProvider({"ssh_dir": str(ssh_dir), **settings})
        raise KeyError(name)  # the configuration admits only the names above

    def check(self) -> None:
        """Build every provider the configuration uses, so a broken one stops start-up."""
        for name in sorted(self.config.providers_in_use()):
            self(name)


def drill_checkpoint(kill_at: str | None) -> Callable[[str], None] | None:
    """For crash drills: SIGKILL this process when the runner reaches ``kill_at``
    (e.g. ``deploy_started:2``); see docs/operations.md."""
    if not kill_at:
        return None

    def checkpoint(point: str) -> None:
        if point == kill_at:
            logging.getLogger(__name__).warning("drill: killing byoi at %s", point)
            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


@dataclass
class App:
    config: Config
    store: Store
    providers: Providers
    runner: Runner
    service: Service
    display: Display
    clock: Clock

    def close(self) -> None:
        self.runner.wait()
        self.store.close()


def build(
    config: Config,
    notifier: Notifier,
    *,
    clock: Clock = utcnow,
    database: Path | None = None,
    notify_interval: float = 0.0,
    store: Store | None = None,
    meter: Meter | None = None,
    wrap_provider: Callable[[Provider], Provider] | None = None,
) -> App:
    """Build everything once; ``store`` when the notifier was built on it first (Slack cards)."""
    providers = Providers(config, wrap_provider)
    providers.check()
    store = store or Store(database or config.database)
    runner = Runner(
        store=store,
        config=config,
        provider_for=providers,
        notifier=notifier,
        clock=clock,
        checkpoint=drill_checkpoint(os.environ.get("BYOI_DRILL_KILL_AT")),
        notify_interval=notify_interval,
        meter=meter,
    )

    service = Service(config=config, store=store, provider_for=providers, runner=runner)
    return App(config, store, providers, runner, service, Display(store), clock)
