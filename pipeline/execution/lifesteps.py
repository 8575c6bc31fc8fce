"""The runner's image-lifecycle steps: probes, bake, snapshot, prune, and a roll's batches.

Mixed into the Runner, whose step machinery (launch, scripts, rollback, state) they use; the
stubs below name what they need from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.config.model import Config, EnvConfig
from pipeline.domain import roll
from pipeline.domain.models import Run, RunServer, RunState, ServerStatus, Step
from pipeline.execution import bake, probes
from pipeline.state import measured
from pipeline.state.measurements import Found
from pipeline.state.steps import ServerEvent
from pipeline.state.store import Store
from providers.base import VERSION_TAG_PREFIX, NotFound, Provider, ProviderError, Script, Server


@dataclass
class Slot:
    run: Run
    env: EnvConfig
    provider: Provider
    record: RunServer
    server: Server | None = None
    step: tuple[Step, float] | None = None
    """The step in progress and when it began (time.monotonic), for the meter."""
    scripts: tuple[Script, ...] | None = None
    """What the new server runs, made once (every step of the slot needs it)."""
    registering: bool = False
    """Recorded as registered by this process (``record`` has what was stored before)."""
    draining: bool = False
    """A scale-down's drain began in this process: its server may be out of service."""
    began: bool = False
    """A step of it was stored as started in this process."""
    pending: list[ServerEvent] = field(default_factory=list)
    """Events after a provider call (its result, the step done), stored with the next write,
    which always comes before the next provider call."""
    measured: list[Found] = field(default_factory=list)
    """A probe's measurement, stored with the next write too (in the same transaction)."""

    @property
    def failing(self) -> bool:
        """Its failure was stored, but a crash came before its rollback ended (the next start
        finishes the rollback instead of redoing the step)."""
        return self.record.status == ServerStatus.WORKING and self.record.reason is not None


PAUSED: ServerEvent = ("paused", {"status": ServerStatus.PENDING})
"""A slot a shutdown stopped once a step had ended: it waits, and the next start goes on with
the step after (``resume_at``). Its row keeps the step that ended."""


def paused(slot: Slot) -> list[ServerEvent]:
    """What a shutdown records for ``slot`` besides what it has pending: ``PAUSED`` if one of
    its steps ended since its last write (the end is in ``pending``), else nothing."""
    ended = any(name.endswith("_done") for name, _ in slot.pending)
    return [PAUSED] if ended else []


RUN_CANCELLED = "the run was cancelled"
"""Why a slot a cancel came before was skipped (``not started: …``)."""


def unstarted(slot: Slot) -> bool:
    """No step of the slot was ever stored as started, here or before a restart: nothing was
    asked of the provider for it, so a cancel skips it rather than rolling it back."""
    record = slot.record
    return not slot.began and record.step is None and record.status == ServerStatus.PENDING


def resume_at(record: RunServer, steps: Sequence[Step]) -> int:
    """Where a slot goes on: at the step it stands at (its start is stored and its end may not
    be), after it if a shutdown paused the slot once that step had ended, or at the first."""
    if record.step not in steps:
        return 0
    at = steps.index(record.step)
    return at + 1 if record.status == ServerStatus.PENDING else at


def unchecked(point: str) -> None:
    """The checkpoint hook when no crash drill is on: nothing to do at ``point``."""


def version_tags(versions: Mapping[str, str]) -> dict[str, str]:
    """The tags that carry measured versions on a server."""
    return {f"{VERSION_TAG_PREFIX}{k}": v for k, v in versions.items()}


def probe_script(env: EnvConfig) -> Script:
    return probes.script(probes.probes_for(env.versions, env.probes), env.deploy.timeout_seconds)


class LifecycleSteps:
    store: Store
    config: Config
    clock: Callable[[], datetime]
    checkpoint: Callable[[str], None]
    _stopping: threading.Event

    # from the Runner ---------------------------------------------------------------------

    def _parallel(self, slots: list[Slot]) -> None:
        raise NotImplementedError

    def _set(self, slot: Slot, status: ServerStatus, event: str, **fields: object) -> None:
        raise NotImplementedError

    def _rollback(self, slot: Slot, what: str = "rolled back") -> str | None:
        raise NotImplementedError

    def _skip(self, slots: Sequence[Slot], why: str) -> None:
        raise NotImplementedError

    def _ensure_server(self, slot: Slot) -> Server:
        raise NotImplementedError

    def _scripts(self, slot: Slot) -> tuple[Script, ...]:
        raise NotImplementedError

    def _script(self, slot: Slot, what: str, script: Script) -> None:
        raise NotImplementedError

    def _find(self, slot: Slot) -> Server | None:
        raise NotImplementedError

    # roll --------------------------------------------------------------------------------

    def _roll(self, run: Run, env: EnvConfig, provider: Provider) -> bool:
        """Batch by batch: new servers first, then the old ones; False when paused (canary)."""
        options = measured.options_of(self.store, run.id)
        # The batch is the run's max_parallel, stored with the run itself in one transaction.
        layout = roll.batches(len(run.servers) // 2, run.max_parallel, canary=options.canary)
        for index, pairs in enumerate(layout, start=1):
            current = self.store.run(run.id) or run
            by_slot = {s.slot: s for s in current.servers}
            news = [Slot(current, env, provider, by_slot[roll.new_slot(p)]) for p in pairs]
            olds = [Slot(current, env, provider, by_slot[roll.old_slot(p)]) for p in pairs]
            if all(s.record.status.finished for s in olds):
                continue
            self.checkpoint(f"roll_batch_started:{index}")
            self._parallel([s for s in news if not s.record.status.finished])
            if self._stopping.is_set():
                return True  # shutting down: the batch stays as it is; the next start resumes it
            if not self._surged(run.id, news):
                self._stop_roll(run.id, news, olds)
                return True
            self.checkpoint(f"roll_batch_surged:{index}")
            options = measured.options_of(self.store, run.id)
            if index == 1 and options.canary and not options.continued:
                measured.set_paused(self.store, run.id, paused=True, continued=False)
                if self.store.cancel_requested(run.id):  # a cancel that came while pausing
                    measured.set_paused(self.store, run.id, paused=False, continued=False)
                    self._stop_roll(run.id, news, olds)
                    return True
                fresh = self.store.run(run.id) or current
                canary = next(s for s in fresh.servers if s.slot == news[0].record.slot)
                self._say(run.id, roll.paused_note(run.id, canary, self._versions(run)))
                return False
            self._parallel([s for s in olds if not s.record.status.finished])
            if self._stopping.is_set():
                return True
            self.checkpoint(f"roll_batch_done:{index}")
            if self.store.cancel_requested(run.id):
                self._stop_roll(run.id, [], olds)
                return True
        return True

    def _say(self, run_id: int, reason: str) -> None:
        """Set what the card says about a run in flight (paused, continued)."""
        self.store.transition(
            run_id, [RunState.RUNNING], RunState.RUNNING, self.clock(), actor="byoi", reason=reason
        )

    def _versions(self, run: Run) -> dict[str, dict[str, str]]:
        found = measured.of_servers(self.store, run.app, run.env)
        return {k: dict(v.versions) for k, v in found.items()}

    def _surged(self, run_id: int, news: list[Slot]) -> bool:
        """Every new server of the batch is in service, and nobody asked to stop."""
        current = self.store.existing_run(run_id)
        wanted = {s.record.slot for s in news}
        done = all(s.status == ServerStatus.DONE for s in current.servers if s.slot in wanted)
        return done and not current.cancel_requested

    def _stop_roll(self, run_id: int, news: list[Slot], olds: list[Slot]) -> None:
        """Roll back the batch's new servers (old ones stay in service); skip what is left."""
        current = self.store.existing_run(run_id)
        by_slot = {s.slot: s for s in current.servers}
        for slot in news:
            record = by_slot[slot.record.slot]
            if record.status == ServerStatus.DONE:
                slot.record = record
                cleanup = self._rollback(slot, "rolled back with its batch")
                self._set(slot, ServerStatus.CANCELLED, "rolled_back", cleanup=cleanup)
        env = olds[0].env if olds else news[0].env if news else None
        provider = olds[0].provider if olds else news[0].provider if news else None
        if env is not None and provider is not None:
            rest = [
                Slot(current, env, provider, r) for r in current.servers if not r.status.finished
            ]
            self._skip(rest, RUN_CANCELLED if current.cancel_requested else "roll stopped")

    def _probe(self, slot: Slot, server: Server) -> dict[str, str]:
        """Run the probes on ``server``; record what they printed in the store and on its tags."""
        env = slot.env
        versions = probes.measure(
            slot.provider, server, env.versions, env.probes, env.deploy.timeout_seconds
        )
        self._probed(slot, server, versions)
        return versions

    def _probed(self, slot: Slot, server: Server, versions: dict[str, str]) -> None:
        """Keep what the probes measured on ``server``: in the store, on its tags."""
        self._keep_measured(slot, server, versions)
        slot.provider.tag_server(server, version_tags(versions))

    def _keep_measured(self, slot: Slot, server: Server, versions: dict[str, str]) -> None:
        """Keep what the probes measured on ``server`` in the store (its tags are the caller's)."""
        # Stored in the slot's next write, with the probe's end: a crash before that write
        # redoes the probe, which measures again.
        slot.measured.append(
            (
                server.id,
                slot.run.app,
                slot.run.env,
                server.image_id,
                versions,
                self.clock(),
                slot.run.id,
            )
        )
        shown = ", ".join(f"{k} {v}" for k, v in versions.items()) or "no version keys"
        # Stored with the slot's next write, as a script's report is (before the next call).
        slot.pending.append(("probed", {"note": f"measured {shown}"}))

    def _refresh_step(self, slot: Slot, step: Step) -> None:
        server = self._find(slot)
        if server is None:
            raise NotFound(f"server {slot.record.provider_id} is gone")
        if step == Step.PROBE:
            self._probe(slot, server)
        else:
            self._snapshot(slot, server)

    def _snapshot(self, slot: Slot, server: Server) -> None:
        """Snapshot with the versions measured on ``server``; publish only if they match."""
        found = measured.of_servers(self.store, slot.run.app, slot.run.env).get(server.id)
        versions = dict(found.versions) if found else {}
        options = measured.options_of(self.store, slot.run.id)
        publish, missed = bake.decide(versions, slot.env.versions, force=options.force)
        image = slot.provider.snapshot(
            server,
            name=bake.image_name(slot.run),
            family=bake.family(slot.env) if publish else None,
            versions=versions,
            tags=bake.provenance(slot.run, slot.env),
        )
        measured.save_image(
            self.store,
            measured.RunImage(
                slot.run.id, image.id, image.name, versions, publish, options.force, missed
            ),
        )
        self.store.update_server(
            slot.run.id,
            slot.record.slot,
            self.clock(),
            event="snapshot_created",
            note=f"image {image.name} ({image.id})" + ("" if publish else " (unpublished)"),
        )

    def _prune_step(self, slot: Slot) -> None:
        image_id = slot.record.provider_id or ""
        try:
            image = slot.provider.resolve_image(image_id)
        except NotFound:
            return  # already gone
        users = [s.id for s in slot.provider.list_servers({}) if s.image_id == image.id]
        if users:
            raise ProviderError(f"image {image.name} is in use by {', '.join(users[:3])}")
        slot.provider.delete_image(image)
