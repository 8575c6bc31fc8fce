"""A cohort: the new servers of a parallel run moving through their steps together.

With a provider that takes many servers in one call (``providers.base.Batches``), a thousand
servers need not park a thousand threads at every step boundary. Each step is one transaction
for the whole cohort (every server's start of the step, with its previous step's end) and then
one provider call for all of them. Crash safety is the single server's: a step is stored as
started before the call and as done with the next write, and every server passes the same
checkpoints. A server that fails leaves the cohort and is rolled back on its own while the
others go on; a cancel or a shutdown is seen at the next step boundary, as a server's thread
would see it.

Mixed into the Runner (as ServerSteps is), whose writes and rollbacks it uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from pipeline.domain.models import ServerStatus, Step, steps_of
from pipeline.errors import Inconsistency
from pipeline.execution import cohorts, probes
from pipeline.execution.errors import internal_error
from pipeline.execution.fanout import fan_out
from pipeline.execution.lifesteps import (
    PAUSED,
    RUN_CANCELLED,
    Slot,
    paused,
    probe_script,
    resume_at,
    unchecked,
    unstarted,
    version_tags,
)
from pipeline.execution.serversteps import ServerSteps
from pipeline.state.steps import ServerEvent
from providers.base import Batches, ProviderError, ScriptResult, Server

R = TypeVar("R")
Failures = dict[int, str]
"""Slots that failed in a step, by slot number, and the reason shown for each."""


class CohortSteps(ServerSteps):
    # from the Runner ---------------------------------------------------------------------

    def _record_all(
        self,
        slots: Sequence[Slot],
        events: Sequence[ServerEvent],
        unless_cancelled: Sequence[ServerEvent] = (),
    ) -> bool:
        raise NotImplementedError

    def _stop(
        self, slot: Slot, outcome: str, status: ServerStatus, reason: str | None = None
    ) -> bool:
        raise NotImplementedError

    def _measure(self, slot: Slot, outcome: str) -> None:
        raise NotImplementedError

    def _notify(self, run_id: int) -> None:
        raise NotImplementedError

    def _skip(self, slots: Sequence[Slot], why: str) -> None:
        raise NotImplementedError

    def _reason(self, slot: Slot, exc: ProviderError) -> str:
        raise NotImplementedError

    # the cohorts -------------------------------------------------------------------------

    def _cohorts(self, slots: list[Slot], batches: Batches) -> None:
        """Take a parallel run's new servers through their steps in cohorts, as many at once
        as ``max_parallel`` allows (pipeline/execution/cohorts.py). A cancel skips the cohorts
        not begun yet together."""
        run = slots[0].run
        size, at_once = cohorts.sizes(len(slots), run.max_parallel)
        waiting, turn = cohorts.Waiting(slots, size), cohorts.Turn()

        def work(_: int) -> None:
            while not self._stopping.is_set():
                if self.store.cancel_requested(run.id):
                    rest = waiting.rest()
                    self._skip([s for s in rest if unstarted(s)], RUN_CANCELLED)
                    started = [s for s in rest if not unstarted(s)]
                    if started:
                        self._cohort(started, batches)  # what a restart found started
                    return
                cohort = waiting.next()
                if cohort is None:
                    return
                self._cohort(cohort, batches, turn)

        fan_out(work, range(at_once), at_once, f"run-{run.id}")

    # the cohort --------------------------------------------------------------------------

    def _cohort(
        self, slots: list[Slot], batches: Batches, turn: cohorts.Turn | None = None
    ) -> None:
        """Take ``slots`` (servers their run launches) through their steps together.

        Whatever raises here (a bug, a store that cannot be written) rolls back every server
        still in the cohort, as a server's own thread would roll back its server."""
        # The servers still in the cohort (those that fail leave it); one whose failure was
        # stored before a crash cut its rollback short only finishes its rollback.
        failing = {s.record.slot: s.record.reason or "" for s in slots if s.failing}
        live = [s for s in slots if s.record.slot not in failing]
        stopping = [self._fail_all(slots, failing)] if failing else []
        try:
            if live:
                with (turn or cohorts.Turn()).taken() as ready:
                    self._together(live, batches, stopping, ready)
        except Exception:  # noqa: BLE001 - internal_error logs the trace
            reason = internal_error(f"run {slots[0].run.id}")
            stopping.append(self._fail_all(live, dict.fromkeys(_numbers(live), reason)))
        finally:
            for future in stopping:
                future.result()

    def _together(
        self,
        live: list[Slot],
        batches: Batches,
        stopping: list[Future[None]],
        ready: Callable[[], None],
    ) -> None:
        """The cohort's steps; ``ready`` is called before each provider call (the first gives
        the next cohort its turn)."""
        steps = steps_of(live[0].run.kind, live[0].record.slot)
        at = {s.record.slot: resume_at(s.record, steps) for s in live}
        for index, step in enumerate(steps):
            if self._stopping.is_set():
                # The last step's end: the next start goes on after it (``resume_at``).
                waiting = [s for s in live if paused(s)]
                self._record_all(waiting, [PAUSED])
                numbers = set(_numbers(waiting))
                rest = [s for s in live if s.pending and s.record.slot not in numbers]
                self._record_all(rest, [])
                return
            # A slot a restart found further along waits for the cohort to reach it.
            members = [s for s in live if at[s.record.slot] <= index]
            if not members:
                continue
            started = (f"{step}_started", {"status": ServerStatus.WORKING, "step": step})
            if self._record_all(members, [], [started]):
                cancelled, live[:] = list(live), []
                # Those the cancel came before are skipped together; the others roll back.
                self._skip([s for s in cancelled if unstarted(s)], RUN_CANCELLED)
                gone = [s for s in cancelled if not unstarted(s)]
                stopping.append(self._stop_all(gone, "cancelled", ServerStatus.CANCELLED))
                return
            self._notify(members[0].run.id)
            began = time.monotonic()
            for slot in members:
                if self.checkpoint is not unchecked:  # a crash drill's
                    self.checkpoint(f"{step}_started:{slot.record.slot}")
                slot.step, slot.began = (step, began), True
            ready()
            failed = self._cohort_step(members, step, batches)
            ended: ServerEvent = (f"{step}_done", {"step": step})  # one for all
            for slot in members:
                if slot.record.slot not in failed:
                    self._measure(slot, "ok")
                    slot.pending.append(ended)
            if failed:
                stopping.append(self._fail_all(live, failed))
                live[:] = [s for s in live if s.record.slot not in failed]
        if live:
            finished: ServerEvent = ("done", {"status": ServerStatus.DONE, "cleanup": None})
            self._record_all(live, [finished])
            self._notify(live[0].run.id)

    def _cohort_step(self, slots: list[Slot], step: Step, batches: Batches) -> Failures:
        """One step of every slot: one provider call for all; the slots that failed."""
        failed: Failures = {}
        try:
            launched = self._servers(slots, batches, failed)
            if step in (Step.SCRUB, Step.DEPLOY):
                self._scripts_all(launched, step.value, step.value, batches, failed)
            elif step == Step.PROBE:
                self._probe_all(launched, batches, failed)
            elif step == Step.REGISTER:
                self._register_all(launched, batches, failed)
            elif step != Step.CLONE:  # the runner sends only new servers' steps here
                raise Inconsistency(f"a cohort has no step {step}")
        except ProviderError as exc:  # the call as a whole: every slot still in it failed
            reason = self._reason(slots[0], exc)  # said (and audited) once, not per server
            for slot in slots:
                failed.setdefault(slot.record.slot, reason)
        except Exception:  # noqa: BLE001 - internal_error logs the trace
            reason = internal_error(f"step {step} of run {slots[0].run.id}")
            for slot in slots:
                failed.setdefault(slot.record.slot, reason)
        return failed

    def _servers(self, slots: list[Slot], batches: Batches, failed: Failures) -> list[Slot]:
        """Launch the slots' servers that are not known yet (clone, or a restart that finds
        them again through the idempotent launch); the slots that have one."""
        wanted = [s for s in slots if s.server is None]
        if wanted:
            image = wanted[0].provider.resolve_image(wanted[0].run.image_id)
            alike = self._alike(wanted[0])
            for slot in wanted:
                self._scripts(slot, alike)
            requests = [self._request(s, image) for s in wanted]
            self._each(wanted, batches.launch_all(requests), self._launched, failed)
        return [s for s in slots if s.record.slot not in failed]

    def _scripts_all(
        self, slots: list[Slot], name: str, what: str, batches: Batches, failed: Failures
    ) -> list[Slot]:
        """Run each slot's script ``name`` on its server; the slots where it succeeded."""
        if not slots:
            return []
        # Every slot's scripts come in one order (``_scripts``): found once, taken by position.
        position = [script.name for script in self._scripts(slots[0])].index(name)
        chosen = {s.record.slot: self._scripts(s)[position] for s in slots}
        if any(script.name != name for script in chosen.values()):
            raise Inconsistency(f"the servers of run {slots[0].run.id} differ in their scripts")
        results = batches.run_script_all([(_server(s), chosen[s.record.slot]) for s in slots])

        def take(slot: Slot, result: ScriptResult) -> None:
            self._scripted(slot, what, chosen[slot.record.slot], result)

        self._each(slots, results, take, failed)
        return [s for s in slots if s.record.slot not in failed]

    def _probe_all(self, slots: list[Slot], batches: Batches, failed: Failures) -> None:
        if not slots:
            return
        env = slots[0].env
        script = probe_script(env)
        results = batches.run_script_all([(_server(s), script) for s in slots])
        measured: dict[int, dict[str, str]] = {}
        keys = probes.keys_of(env.versions, env.probes)  # the same for every slot

        def take(slot: Slot, result: ScriptResult) -> None:
            versions = probes.read(keys, result.output if result.ok else "")
            self._keep_measured(slot, _server(slot), versions)
            measured[slot.record.slot] = versions

        self._each(slots, results, take, failed)
        read = [s for s in slots if s.record.slot in measured]
        tagged = [(_server(s), version_tags(measured[s.record.slot])) for s in read]
        self._each(read, batches.tag_all(tagged), lambda _slot, _none: None, failed)

    def _register_all(self, slots: list[Slot], batches: Batches, failed: Failures) -> None:
        if slots and any(s.name == "health" for s in self._scripts(slots[0])):
            slots = self._scripts_all(slots, "health", "health check", batches, failed)
        if not slots:
            return
        # Stored before the call: a crash in it must still deregister on rollback.
        self._record_all(slots, [("registering", {"registered": True})])
        for slot in slots:
            slot.registering = True
        outcomes = batches.register_all([_server(s) for s in slots], self._target(slots[0]))
        self._each(slots, outcomes, lambda _slot, _none: None, failed)

    def _each(
        self,
        slots: Sequence[Slot],
        outcomes: Sequence[R | ProviderError],
        take: Callable[[Slot, R], None],
        failed: Failures,
    ) -> None:
        """Give each slot its outcome of a call for many: ``take`` the result, or fail it."""
        if len(outcomes) != len(slots):
            raise ProviderError(f"the provider answered {len(outcomes)} of {len(slots)} servers")
        for slot, outcome in zip(slots, outcomes, strict=True):
            try:
                if isinstance(outcome, ProviderError):
                    raise outcome
                take(slot, outcome)
            except ProviderError as exc:
                failed[slot.record.slot] = self._reason(slot, exc)
            except Exception:  # noqa: BLE001 - internal_error logs the trace
                failed[slot.record.slot] = internal_error(f"server {slot.record.key}")

    def _fail_all(self, slots: list[Slot], failed: Failures) -> Future[None]:
        """Roll back and record the failed slots, in the background: the others go on."""
        gone = [s for s in slots if s.record.slot in failed]
        return _in_background(
            lambda s: self._stop(s, "failed", ServerStatus.FAILED, failed[s.record.slot]), gone
        )

    def _stop_all(self, slots: list[Slot], outcome: str, status: ServerStatus) -> Future[None]:
        return _in_background(lambda s: self._stop(s, outcome, status), slots)


def _in_background(work: Callable[[Slot], object], slots: list[Slot]) -> Future[None]:
    """``work`` on every slot, on threads of their own; the future raises what it raised."""
    name = f"run-{slots[0].run.id}-stop" if slots else "stop"
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    try:
        return executor.submit(fan_out, work, slots, max(1, len(slots)), name)
    finally:
        executor.shutdown(wait=False)


def _numbers(slots: Sequence[Slot]) -> list[int]:
    return [s.record.slot for s in slots]


def _server(slot: Slot) -> Server:
    if slot.server is None:  # _servers launches every slot it keeps
        raise Inconsistency(f"server {slot.record.key} was not launched")
    return slot.server
