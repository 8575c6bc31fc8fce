"""Carry out approved runs: every server through its steps, with rollback, cancel and resume.

Each step is stored as started before the provider call and as finished after it, so a
restart redoes at most the step that was in flight; provider calls are idempotent by key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from pipeline.config.model import Config
from pipeline.domain import failures, roll
from pipeline.domain.models import (
    Run,
    RunKind,
    RunState,
    ServerStatus,
    Step,
    Strategy,
    creates_server,
    steps_of,
)
from pipeline.errors import ByoiError, logged
from pipeline.execution import bake, scripts
from pipeline.execution.fanout import fan_out
from pipeline.execution.lifesteps import LifecycleSteps, probe_script
from pipeline.execution.lifesteps import Slot as _Slot
from pipeline.ports import Clock, Meter, Notifier, ProviderFor
from pipeline.state import measured
from pipeline.state.steps import ServerEvent
from pipeline.state.store import Store
from providers.base import (
    TAG_APP,
    TAG_ENV,
    TAG_KEY,
    TAG_RUN,
    LaunchRequest,
    ProviderError,
    ScriptFailed,
    Server,
    Target,
)

log = logging.getLogger(__name__)


class Cancelled(ByoiError):
    """The run's cancel was requested: the slot stops and rolls back."""


class Interrupted(ByoiError):
    """byoi is shutting down: the slot stays where it is and the next start resumes it."""


def internal_error(what: str) -> str:
    """Log the trace under a short reference and return what a person may be shown."""
    return f"internal error (reference {logged(log, what)})"


class Runner(LifecycleSteps):
    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        provider_for: ProviderFor,
        notifier: Notifier,
        clock: Clock,
        checkpoint: Callable[[str], None] | None = None,
        notify_interval: float = 0.0,
        meter: Meter | None = None,
    ) -> None:
        self.meter = meter
        # 0 tells the notifier of every change (the shell prints each step); a server sets
        # a short interval so a large fleet is not re-read from the store on every step.
        self.notify_interval = notify_interval
        self._dirty: set[int] = set()
        self._notifier_thread: threading.Thread | None = None
        self.store = store
        # Called at every step boundary with "<point>:<slot>"; crash drills kill the process there.
        self.checkpoint = checkpoint or (lambda _: None)
        self.config = config
        self.provider_for = provider_for
        self.notifier = notifier
        self.clock = clock
        self._threads: dict[int, threading.Thread] = {}
        self._again: set[int] = set()
        self._lock = threading.Lock()
        self._notify_lock = threading.Lock()
        self._stopping = threading.Event()

    # starting ---------------------------------------------------------------------------

    def start(self, run_id: int) -> None:
        """Carry out a run in the background (at most one thread per run)."""
        with self._lock:
            if self._stopping.is_set():
                return  # stays approved; the next start resumes it
            thread = self._threads.get(run_id)
            if thread is not None and thread.is_alive():
                self._again.add(run_id)  # e.g. `continue` while a pausing roll is returning
                return
            # Forget runs that ended: `byoi serve` lives for months (bench/soak.py).
            self._threads = {k: t for k, t in self._threads.items() if t.is_alive()}
            thread = threading.Thread(target=self._guarded, args=(run_id,), name=f"run-{run_id}")
            self._threads[run_id] = thread
            thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every run started so far, at most ``timeout`` seconds in all; True if
        every one has stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._flush_notifications()
        return not any(t.is_alive() for t in threads)

    def stop(self) -> None:
        """Start no new run or step; steps in flight finish and are stored (see ``wait``)."""
        self._stopping.set()

    @property
    def busy(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._threads.values())

    def _guarded(self, run_id: int) -> None:
        try:
            self.execute(run_id)
            while self._take_again(run_id):
                self.execute(run_id)
        except Exception:  # noqa: BLE001 - internal_error logs the trace
            self.store.transition(
                run_id,
                [RunState.RUNNING, RunState.APPROVED],
                RunState.FAILED,
                self.clock(),
                actor="byoi",
                reason=internal_error(f"run {run_id}"),
            )
            self._notify(run_id)

    def _take_again(self, run_id: int) -> bool:
        with self._lock:
            if run_id in self._again:
                self._again.discard(run_id)
                return True
            return False

    def _notify(self, run_id: int) -> None:
        """Tell the notifier; with a notify_interval, at most once per interval per run."""
        if self.notify_interval <= 0:
            self._deliver(run_id)
            return
        with self._lock:
            self._dirty.add(run_id)
            if self._notifier_thread is None or not self._notifier_thread.is_alive():
                self._notifier_thread = threading.Thread(
                    target=self._notify_loop, name="run-notifier", daemon=True
                )
                self._notifier_thread.start()

    def _notify_loop(self) -> None:
        while True:
            time.sleep(self.notify_interval)
            if not self._flush_notifications():
                return

    def _flush_notifications(self) -> bool:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            if not dirty:
                self._notifier_thread = None
                return False
        for run_id in sorted(dirty):
            self._deliver(run_id)
        return True

    def _deliver(self, run_id: int) -> None:
        # Read under the lock: slots of one run notify from several threads, and a read taken
        # before a newer one must not be delivered after it (a note would be shown again).
        with self._notify_lock:
            run = self.store.run(run_id)
            if run is None:
                return
            try:
                self.notifier.run_changed(run)
            except Exception:
                log.exception("notifier failed for run %s", run_id)

    # executing --------------------------------------------------------------------------

    def execute(self, run_id: int) -> Run | None:
        """Carry out (or resume) a run to its end, synchronously."""
        self.store.transition(
            run_id, [RunState.APPROVED], RunState.RUNNING, self.clock(), actor="byoi"
        )
        run = self.store.run(run_id)
        if run is None or run.state != RunState.RUNNING:
            return run
        self._notify(run_id)
        begun = time.monotonic()
        env = self.config.apps[run.app].environments[run.env]
        provider = self.provider_for(env.provider)
        open_slots = [_Slot(run, env, provider, s) for s in run.servers if not s.status.finished]
        if run.kind == RunKind.ROLL:
            if not self._roll(run, env, provider):
                self._notify(run_id)
                return self.store.run(run_id)  # paused after its canary
        elif run.strategy == Strategy.SERIAL:
            self._serial(open_slots)
        elif open_slots:
            self._parallel(open_slots)
        if self._stopping.is_set():
            log.info("run %s paused for shutdown; the next start resumes it", run_id)
            return self.store.run(run_id)
        finished = self._finish(run_id)
        if self.meter is not None and finished is not None:
            self.meter.run_finished(finished, env.provider, time.monotonic() - begun)
        return finished

    def _parallel(self, slots: list[_Slot]) -> None:
        if slots:
            fan_out(self._work, slots, slots[0].run.max_parallel, f"run-{slots[0].run.id}")

    def _serial(self, slots: list[_Slot]) -> None:
        for index, slot in enumerate(slots):
            finished = self._work(slot)
            if finished is None:
                return  # interrupted by a shutdown: the rest waits for the next start
            if not finished:
                for rest in slots[index + 1 :]:
                    self._set(
                        rest,
                        ServerStatus.SKIPPED,
                        "skipped",
                        reason="not started: an earlier server failed (serial)",
                    )
                return

    def _finish(self, run_id: int) -> Run | None:
        outcomes = self.store.server_outcomes(run_id)  # not the whole run: a fleet is large
        done = sum(status == ServerStatus.DONE for status, _ in outcomes)
        failed = [reason for status, reason in outcomes if status == ServerStatus.FAILED]
        if self.store.cancel_requested(run_id):
            state, reason = RunState.CANCELLED, f"cancelled; {done} server(s) finished"
        elif not failed and done == len(outcomes):
            state, reason = RunState.SUCCEEDED, None
        elif done == 0:
            state, reason = RunState.FAILED, failed[0] if failed else "nothing finished"
        else:
            state, reason = RunState.PARTIALLY_FAILED, f"{len(failed)} of {len(outcomes)} failed"
        made = measured.image_of(self.store, run_id)
        run = self.store.run(run_id) if made is not None and state == RunState.SUCCEEDED else None
        if made is not None and run is not None:
            env = self.config.apps[run.app].environments[run.env]
            reason = bake.outcome(made, bake.family(env))
        self.store.transition(
            run_id, [RunState.RUNNING], state, self.clock(), actor="byoi", reason=reason
        )
        self._notify(run_id)
        return self.store.run(run_id)

    def _set(self, slot: _Slot, status: ServerStatus, event: str, **fields: object) -> None:
        self._record(slot, [(event, {"status": status, **fields})])
        self._notify(slot.run.id)

    def _record(
        self,
        slot: _Slot,
        events: Sequence[ServerEvent],
        unless_cancelled: Sequence[ServerEvent] = (),
    ) -> bool:
        """Store the slot's pending events and ``events`` in one write (``unless_cancelled``
        too, if the run's cancel was not requested); True if it was."""
        pending, slot.pending = slot.pending, []
        cancelled = self.store.record_server(
            slot.run.id, slot.record.slot, self.clock(), [*pending, *events], unless_cancelled
        )
        for event, _ in pending:
            if event.endswith("_done"):
                self.checkpoint(f"{event}:{slot.record.slot}")
        return cancelled

    def _work(self, slot: _Slot) -> bool | None:
        """Take one server through its steps; True if it finished, None if interrupted.

        A step's start is stored before its provider call, with the previous step's end and
        the cancel check in the same write; its end goes with the next write. Every failure
        rolls the slot back, whatever raised it: a bug or an unexpected answer must not leave
        a launched server for the next restart's reconciler."""
        steps = steps_of(slot.run.kind, slot.record.slot)
        start = steps.index(slot.record.step) if slot.record.step in steps else 0
        try:
            for step in steps[start:]:
                if self._stopping.is_set():
                    raise Interrupted
                started = (f"{step}_started", {"status": ServerStatus.WORKING, "step": step})
                if not _cancellable(slot):
                    self._record(slot, [started])
                elif self._record(slot, [], [started]):
                    raise Cancelled
                self._notify(slot.run.id)
                self.checkpoint(f"{step}_started:{slot.record.slot}")
                slot.step = (step, time.monotonic())
                self._do(slot, step)
                self._measure(slot, "ok")
                slot.pending.append((f"{step}_done", {"step": step}))
        except Cancelled:
            self._measure(slot, "cancelled")
            cleanup = self._rollback(slot)
            self._set(slot, ServerStatus.CANCELLED, "cancelled", cleanup=cleanup)
            return False
        except Interrupted:
            self._record(slot, [])  # the last step's end, so the next start does not redo it
            return None
        except ProviderError as exc:
            self._measure(slot, "failed")
            reason = self._reason(slot, exc)
            cleanup = self._rollback(slot)
            self._set(slot, ServerStatus.FAILED, "failed", reason=reason, cleanup=cleanup)
            return False
        except Exception:  # noqa: BLE001 - internal_error logs the trace
            self._measure(slot, "failed")
            reason = internal_error(f"server {slot.record.key}")
            cleanup = self._rollback(slot)
            self._set(slot, ServerStatus.FAILED, "failed", reason=reason, cleanup=cleanup)
            return False
        cleanup = self._rollback(slot, "builder") if slot.run.kind == RunKind.BAKE else None
        self._set(slot, ServerStatus.DONE, "done", cleanup=cleanup)
        return True

    def _measure(self, slot: _Slot, outcome: str) -> None:
        """Tell the meter how the step in progress ended (nothing if none was in progress)."""
        if slot.step is None:
            return
        step, began = slot.step
        slot.step = None
        if self.meter is not None:
            seconds = time.monotonic() - began
            self.meter.step_finished(
                slot.run, slot.record.slot, step, slot.env.provider, outcome, seconds
            )

    def _reason(self, slot: _Slot, exc: ProviderError) -> str:
        """The sentence shown for a failure; the provider's own text is logged and audited."""
        reason = failures.explain(exc, slot.env.provider, slot.env.spec)
        if failures.is_explained(exc):
            log.warning("run %s slot %s: %s", slot.run.id, slot.record.slot, exc.reason)
            self.store.audit(self.clock(), slot.run.id, "byoi", "provider_error", exc.reason)
        return reason

    # steps ------------------------------------------------------------------------------

    def _do(self, slot: _Slot, step: Step) -> None:
        kind, number = slot.run.kind, slot.record.slot
        if kind == RunKind.SCALE_UP or (kind == RunKind.ROLL and roll.is_new(number)):
            self._scale_up_step(slot, step)
        elif kind in (RunKind.SCALE_DOWN, RunKind.ROLL):
            self._scale_down_step(slot, step)
        elif kind == RunKind.BAKE:
            self._bake_step(slot, step)
        elif kind == RunKind.PRUNE:
            self._prune_step(slot)
        else:
            self._refresh_step(slot, step)

    def _launch(self, slot: _Slot) -> Server:
        image = slot.provider.resolve_image(slot.run.image_id)
        tags = {TAG_RUN: str(slot.run.id), TAG_APP: slot.run.app, TAG_ENV: slot.run.env}
        if slot.run.kind == RunKind.BAKE:
            del tags[TAG_ENV]  # a builder is no member of the env's fleet
        request = LaunchRequest(
            key=slot.record.key,
            name=slot.record.key,
            image=image,
            spec=slot.env.spec,
            tags=tags,
            scripts=self._scripts(slot),
        )
        return slot.provider.launch(request)

    def _scripts(self, slot: _Slot) -> tuple[scripts.Script, ...]:
        """The scripts a new server runs, in order: a builder bakes, a server deploys."""
        deploy = slot.env.deploy
        probe = probe_script(slot.env)
        if slot.run.kind == RunKind.BAKE:
            return (bake.script(slot.env), scripts.scrub(deploy), probe)
        steps = [scripts.scrub(deploy), scripts.deploy(deploy, slot.run, slot.record.key), probe]
        if deploy.health_command:
            steps.append(scripts.health(deploy))
        return tuple(steps)

    def _ensure_server(self, slot: _Slot) -> Server:
        # A resumed slot finds its server again through the idempotent launch.
        if slot.server is None:
            slot.server = self._launch(slot)
            self.checkpoint(f"launched:{slot.record.slot}")  # seen by the cloud, not yet stored
            slot.pending.append(("launched", {"provider_id": slot.server.id}))
        return slot.server

    def _scale_up_step(self, slot: _Slot, step: Step) -> None:
        server = self._ensure_server(slot)
        steps = {s.name: s for s in self._scripts(slot)}
        if step == Step.SCRUB:
            self._script(slot, "scrub", steps["scrub"])
        elif step == Step.DEPLOY:
            self._script(slot, "deploy", steps["deploy"])
        elif step == Step.PROBE:
            self._probe(slot, server)
        elif step == Step.REGISTER:
            if "health" in steps:
                self._script(slot, "health check", steps["health"])
            # Stored before the call: a crash in it must still deregister on rollback.
            self._record(slot, [("registering", {"registered": True})])
            slot.registering = True
            slot.provider.register(server, self._target(slot))

    def _script(self, slot: _Slot, what: str, script: scripts.Script) -> None:
        result = slot.provider.run_script(self._ensure_server(slot), script)
        if not result.ok:
            tail = result.tail(3).replace("\n", " | ")
            raise ScriptFailed(
                f"{what} exited {result.exit_code}: {tail}",
                exit_code=result.exit_code,
                output=result.output,
            )
        slot.pending.append((f"{script.name}_output", {"note": _summary(result.output)}))

    def _target(self, slot: _Slot) -> Target:
        return Target(slot.run.target, slot.env.drain_seconds)

    def _find(self, slot: _Slot) -> Server | None:
        live = slot.provider.list_servers({TAG_APP: slot.run.app, TAG_ENV: slot.run.env})
        return next((s for s in live if s.id == slot.record.provider_id), None)

    def _scale_down_step(self, slot: _Slot, step: Step) -> None:
        server = self._find(slot)
        if server is None:
            return  # already gone: the goal of both steps holds
        if step == Step.DRAIN:
            slot.provider.deregister(server, self._target(slot))
        else:
            slot.provider.terminate(server)

    # rollback ---------------------------------------------------------------------------

    def _rollback(self, slot: _Slot, what: str = "rolled back") -> str | None:
        """Undo a slot that launches: deregister and terminate whatever carries its key."""
        if not creates_server(slot.run.kind, slot.record.slot):
            return None
        try:
            servers = slot.provider.list_servers({TAG_KEY: slot.record.key})
            # Only this slot's thread changes its `registered`: no need to read the whole run
            # (a cancelled 1,000-server run would read it 1,000 times).
            registered = slot.record.registered or slot.registering
            for server in servers:
                if registered:
                    slot.provider.deregister(server, Target(slot.run.target, 0.0))
                slot.provider.terminate(server)
        except ProviderError as exc:
            log.warning("rollback of %s failed: %s", slot.record.key, exc.reason)
            return f"rollback failed: {exc.reason}; the reconciler will retry"
        except Exception:  # noqa: BLE001 - internal_error logs the trace
            reason = internal_error(f"rollback of {slot.record.key}")
            return f"rollback failed: {reason}; the reconciler will retry"
        self._record(slot, [("rolled_back", {"registered": False})])
        names = ", ".join(s.id for s in servers)
        return f"{what} (terminated {names})" if servers else f"{what} (nothing created)"


def _cancellable(slot: _Slot) -> bool:
    """Once a roll's batch removes its old servers it finishes, so the fleet keeps its size."""
    return not (slot.run.kind == RunKind.ROLL and not roll.is_new(slot.record.slot))


def _summary(output: str) -> str:
    """A script's report in one line: scrub's removals, or its last line of output."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    cleaned = [line.split(" ", 1)[1] for line in lines if line.startswith(("removed ", "emptied "))]
    if cleaned:
        return f"scrubbed {len(cleaned)}: " + ", ".join(cleaned)
    return lines[-1] if lines else ""
