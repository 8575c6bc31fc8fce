"""After a restart: resume runs that were in flight, and remove servers no run accounts for."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pipeline.config.model import Config
from pipeline.domain.models import RunKind, RunState, ServerStatus, creates_server
from pipeline.execution.runner import Runner
from pipeline.ports import ProviderFor
from pipeline.state.store import Store
from providers.base import TAG_APP, TAG_ENV, TAG_KEY, ProviderError, Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Orphan:
    provider: str
    server_id: str
    key: str
    outcome: str


def resume(store: Store, runner: Runner, now: datetime) -> list[int]:
    """Start again every approved or running run; returns their ids."""
    runs = store.runs_in([RunState.APPROVED, RunState.RUNNING])
    for run in runs:
        store.audit(now, run.id, "byoi", "resumed", run.state.value)
        runner.start(run.id)
    return [r.id for r in runs]


def _wanted_keys(store: Store) -> set[str]:
    """Keys of servers that should exist: finished or in-flight slots that launch a server.

    A builder is wanted only while its bake is in flight: done, it was already terminated.
    """
    keep = set()
    for run in store.runs_in(list(RunState)):
        for server in run.servers:
            if not creates_server(run.kind, server.slot):
                continue
            in_flight = run.state.active and not server.status.finished
            done = server.status == ServerStatus.DONE and run.kind != RunKind.BAKE
            if done or in_flight:
                keep.add(server.key)
    return keep


def reconcile(
    store: Store, config: Config, provider_for: ProviderFor, now: datetime
) -> list[Orphan]:
    """Terminate servers that carry this database's key prefix but that no run accounts for.

    Only keys made by this database (``byoi-<install_id>-``) are considered, so servers made
    by hand or by another byoi installation are never touched.
    """
    prefix = f"byoi-{store.install_id}-"
    keep = _wanted_keys(store)
    orphans: list[Orphan] = []
    for name in sorted(config.providers_in_use()):
        provider = provider_for(name)
        for app in config.apps:
            for server in provider.list_servers({TAG_APP: app}):
                key = server.tags.get(TAG_KEY, "")
                if not key.startswith(prefix) or key in keep:
                    continue
                env = config.apps[app].environments.get(server.tags.get(TAG_ENV, ""))
                try:
                    if env is not None:
                        provider.deregister(server, Target(env.target, 0.0))
                    provider.terminate(server)
                    outcome = "terminated"
                except ProviderError as exc:
                    outcome = f"could not terminate: {exc.reason}"
                store.audit(now, None, "byoi", "orphan", f"{name} {server.id} {key}: {outcome}")
                log.warning("orphan server %s (%s) on %s: %s", server.id, key, name, outcome)
                orphans.append(Orphan(name, server.id, key, outcome))
    return orphans
