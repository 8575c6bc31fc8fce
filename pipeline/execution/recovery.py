"""After a restart: resume runs that were in flight, and remove servers no run accounts for."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pipeline.config.model import Config
from pipeline.domain.models import RunState
from pipeline.execution.runner import Runner
from pipeline.ports import ProviderFor
from pipeline.state import measured
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
    """Start again every approved or running run that no other byoi process sharing the
    database is carrying out; returns their ids."""
    runs = [r for r in store.runs_in([RunState.APPROVED, RunState.RUNNING]) if runner.claim(r.id)]
    for run in runs:
        store.audit(now, run.id, "byoi", "resumed", run.state.value)
        runner.start(run.id)
    return [r.id for r in runs]


def take_over(store: Store, runner: Runner, now: datetime) -> list[int]:
    """Carry on the runs another byoi process sharing the database has left since this one
    started: approved or running, carried out by no process (their lock is free: it stopped
    with steps in flight, or died), and not a roll waiting for `continue`. ``resume`` does
    this at start, but skips the runs of a process still stopping beside it; this is called
    again and again (``byoi serve``'s housekeeping), so those are not left until the next
    start. Returns the ids taken."""
    taken = []
    for run_id in store.run_ids_in([RunState.APPROVED, RunState.RUNNING]):
        if runner.carrying_out(run_id) or measured.options_of(store, run_id).paused:
            continue
        if runner.claim(run_id):
            store.audit(now, run_id, "byoi", "resumed", "left by another byoi process")
            runner.start(run_id)
            taken.append(run_id)
    return taken


def reconcile(
    store: Store, config: Config, provider_for: ProviderFor, now: datetime
) -> list[Orphan]:
    """Terminate servers that carry this database's key prefix but that no run accounts for.

    Only keys made by this database (``byoi-<install_id>-``) are considered, so servers made
    by hand or by another byoi installation are never touched.
    """
    prefix = f"byoi-{store.install_id}-"
    ours = [
        (name, provider_for(name), server)
        for name in sorted(config.providers_in_use())
        for app in config.apps
        for server in provider_for(name).list_servers({TAG_APP: app})
        if server.tags.get(TAG_KEY, "").startswith(prefix)
    ]
    keep = store.wanted_keys(server.tags[TAG_KEY] for _, _, server in ours)
    orphans: list[Orphan] = []
    for name, provider, server in ours:
        key = server.tags[TAG_KEY]
        if key in keep:
            continue
        app = config.apps.get(server.tags.get(TAG_APP, ""))
        env = app.environments.get(server.tags.get(TAG_ENV, "")) if app else None
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
