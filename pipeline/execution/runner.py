"""Carry out approved runs: every server through its steps, with rollback, cancel and resume.

Each step is stored as started before the provider call and as finished after it, so a
restart redoes at most the step that was in flight; provider calls are idempotent by key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from pipeline.config.model import Config
from pipeline.domain import failures, roll
from pipeline.domain.models import (
    Run,
    RunKind,
    RunState,
    ServerStatus,
    Strategy,
    creates_server,
    steps_of,
)
from pipeline.execution import bake
from pipeline.execution.cohort import CohortSteps
from pipeline.execution.errors import Cancelled, Interrupted, internal_error
from pipeline.execution.fanout import fan_out
from pipeline.execution.lifesteps import RUN_CANCELLED, paused, resume_at, unchecked, unstarted
from pipeline.execution.lifesteps import Slot as _Slot
from pipeline.execution.notices import RunNotices
from pipeline.ports import Clock, Meter, Notifier, ProviderFor
from pipeline.state import measured
from pipeline.state.runlocks import RunLocks
from pipeline.state.steps import ServerEvent, SlotChange
from pipeline.state.store import Store
from providers.base import Batches, ProviderError

log = logging.getLogger(__name__)
__all__ = ["Cancelled", "Interrupted", "Runner", "internal_error"]


class Runner(CohortSteps):
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
        self.notices = RunNotices(store, notifier, notify_interval)
        self.store = store
        # Called at every step boundary with "<point>:<slot>"; crash drills kill the process there.
        self.checkpoint = checkpoint or unchecked
        self.config = config
        self.provider_for = provider_for
        self.notifier = notifier
        self.clock = clock
        self._threads: dict[int, threading.Thread] = {}
        self._again: set[int] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.locks = RunLocks(store.database.path)

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
        self.notices.flush()
        return not any(t.is_alive() for t in threads)

    def stop(self) -> None:
        """Start no new run or step; steps in flight finish and are stored (see ``wait``)."""
        self._stopping.set()

    def carrying_out(self, run_id: int) -> bool:
        """Whether this runner has a thread on ``run_id`` now."""
        with self._lock:
            thread = self._threads.get(run_id)
            return thread is not None and thread.is_alive()

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
        self.notices.changed(run_id)

    # executing --------------------------------------------------------------------------

    def claim(self, run_id: int) -> bool:
        """Make ``run_id`` this process's to carry out; False if another byoi process is
        carrying it out (pipeline/state/runlocks.py)."""
        return self.locks.take(run_id)

    def execute(self, run_id: int) -> Run | None:
        """Carry out (or resume) a run to its end, synchronously, unless another byoi
        process sharing the database is carrying it out. The run is returned as it stands
        then, without its servers (``Store.run_alone``: a fleet's rows are read by whoever
        needs them, not at the end of every run)."""
        if not self.claim(run_id):
            log.info("run %s is being carried out by another byoi process", run_id)
            return self.store.run_alone(run_id)
        try:
            return self._execute(run_id)
        finally:
            self.locks.give_back(run_id)

    def _execute(self, run_id: int) -> Run | None:
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
                return self.store.run_alone(run_id)  # paused after its canary
        elif run.strategy == Strategy.SERIAL:
            self._serial(open_slots)
        elif open_slots:
            self._parallel(open_slots)
        if self._stopping.is_set():
            log.info("run %s paused for shutdown; the next start resumes it", run_id)
            return self.store.run_alone(run_id)
        finished = self._finish(run_id, run.kind)
        if self.meter is not None and finished is not None:
            self.meter.run_finished(finished, env.provider, time.monotonic() - begun)
        return finished

    def _parallel(self, slots: list[_Slot]) -> None:
        if not slots:
            return
        run, provider = slots[0].run, slots[0].provider
        limit = run.max_parallel
        # New servers of a scale-up or a roll (steps_of: SCALE_UP_STEPS); a bake's builder has
        # steps of its own.
        launching = all(creates_server(run.kind, s.record.slot) for s in slots)
        if isinstance(provider, Batches) and launching and run.kind != RunKind.BAKE:
            self._cohorts(slots, provider)  # many servers per provider call
        else:
            fan_out(self._work, slots, limit, f"run-{run.id}")

    def _serial(self, slots: list[_Slot]) -> None:
        for index, slot in enumerate(slots):
            if self.store.cancel_requested(slot.run.id):
                self._cancel_rest(slots[index:])
                return
            finished = self._work(slot)
            if finished is None:
                return  # interrupted by a shutdown: the rest waits for the next start
            if not finished:
                if self.store.cancel_requested(slot.run.id):
                    self._cancel_rest(slots[index + 1 :])
                else:
                    self._skip(slots[index + 1 :], "an earlier server failed (serial)")
                return

    def _cancel_rest(self, slots: Sequence[_Slot]) -> None:
        """The slots a cancelled run has not taken through yet: those never started are
        skipped together; one a restart found started is stopped (rolled back)."""
        self._skip([s for s in slots if unstarted(s)], RUN_CANCELLED)
        for slot in slots:
            if not unstarted(slot):
                self._stop(slot, "cancelled", ServerStatus.CANCELLED)

    def _skip(self, slots: Sequence[_Slot], why: str) -> None:
        """Mark ``slots`` skipped, not started because of ``why``: in one write, so that they
        are told as one change (the shell counts them in one line)."""
        if slots:
            skipped = {"status": ServerStatus.SKIPPED, "reason": f"not started: {why}"}
            self._record_all(slots, [("skipped", skipped)])
            self._notify(slots[0].run.id)

    def _finish(self, run_id: int, kind: RunKind) -> Run | None:
        outcomes = self.store.server_outcomes(run_id)  # not the whole run: a fleet is large
        done = sum(status == ServerStatus.DONE for status, _ in outcomes)
        failed = [reason for status, reason in outcomes if status == ServerStatus.FAILED]
        if self.store.cancel_requested(run_id):
            state, reason = RunState.CANCELLED, _cancelled(outcomes)
        elif not failed and done == len(outcomes):
            state, reason = RunState.SUCCEEDED, None
        elif done == 0:
            state, reason = RunState.FAILED, failed[0] if failed else "nothing finished"
        else:
            state, reason = RunState.PARTIALLY_FAILED, _partly(kind, outcomes)
        made = measured.image_of(self.store, run_id)
        succeeded = made is not None and state == RunState.SUCCEEDED
        run = self.store.run_alone(run_id) if succeeded else None
        if made is not None and run is not None:
            env = self.config.apps[run.app].environments[run.env]
            reason = bake.outcome(made, bake.family(env))
        self.store.transition(
            run_id, [RunState.RUNNING], state, self.clock(), actor="byoi", reason=reason
        )
        self._notify(run_id)
        return self.store.run_alone(run_id)

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
        return self._record_all([slot], events, unless_cancelled)

    def _record_all(
        self,
        slots: Sequence[_Slot],
        events: Sequence[ServerEvent],
        unless_cancelled: Sequence[ServerEvent] = (),
    ) -> bool:
        """``_record`` for each of ``slots``, all in one transaction; True if the cancel of
        their run was requested."""
        at, unless = self.clock().isoformat(), tuple(unless_cancelled)
        changes = [_change(slot, at, events, unless) for slot in slots]
        cancelled = any(self.store.record_servers(changes))
        if self.checkpoint is not unchecked:  # a thousand names a write, for a drill only
            for change in changes:
                for event, _ in change.events:
                    if event.endswith("_done"):
                        self.checkpoint(f"{event}:{change.slot}")
        return cancelled

    def _work(self, slot: _Slot) -> bool | None:
        """Take one server through its steps; True if it finished, None if interrupted.

        Every failure rolls the slot back, whatever raised it: a bug or an unexpected answer
        must not leave a launched server for the next restart's reconciler."""
        if slot.failing:
            return self._stop(slot, "failed", ServerStatus.FAILED, slot.record.reason)
        try:
            self._steps(slot)
        except Cancelled:
            if unstarted(slot):
                self._skip([slot], RUN_CANCELLED)
                return False
            return self._stop(slot, "cancelled", ServerStatus.CANCELLED)
        except Interrupted:
            # The last step's end, so that the next start goes on after it, not redoing it.
            self._record(slot, paused(slot))
            return None
        except ProviderError as exc:
            return self._stop(slot, "failed", ServerStatus.FAILED, self._reason(slot, exc))
        except Exception:  # noqa: BLE001 - internal_error logs the trace
            reason = internal_error(f"server {slot.record.key}")
            return self._stop(slot, "failed", ServerStatus.FAILED, reason)
        cleanup = self._rollback(slot, "builder") if slot.run.kind == RunKind.BAKE else None
        self._set(slot, ServerStatus.DONE, "done", cleanup=cleanup)
        return True

    def _steps(self, slot: _Slot) -> None:
        """The slot's steps from where it stands. A step's start is stored before its provider
        call, with the previous step's end and the cancel check in the same write; its end
        goes with the next write."""
        steps = steps_of(slot.run.kind, slot.record.slot)
        start = resume_at(slot.record, steps)
        cancellable = _cancellable(slot)
        for step in steps[start:]:
            if self._stopping.is_set():
                raise Interrupted
            started = (f"{step}_started", {"status": ServerStatus.WORKING, "step": step})
            if not cancellable:
                self._record(slot, [started])
            elif self._record(slot, [], [started]):
                raise Cancelled
            slot.began = True
            self._notify(slot.run.id)
            self.checkpoint(f"{step}_started:{slot.record.slot}")
            slot.step = (step, time.monotonic())
            self._do(slot, step)
            self._measure(slot, "ok")
            slot.pending.append((f"{step}_done", {"step": step}))

    def _stop(
        self, slot: _Slot, outcome: str, status: ServerStatus, reason: str | None = None
    ) -> bool:
        """End a slot early: roll it back and record why; False (it did not finish).

        A failure's reason is stored before the rollback: after a crash in it, the next start
        finishes the rollback and keeps the reason (``Slot.failing``), not redoing the step."""
        self._measure(slot, outcome)
        if reason is not None and creates_server(slot.run.kind, slot.record.slot):
            self._record(slot, [("failing", {"reason": reason})])
            self.checkpoint(f"failing:{slot.record.slot}")
        cleanup = self._rollback(slot)
        if reason is None:
            self._set(slot, status, outcome, cleanup=cleanup)
        else:
            self._set(slot, status, outcome, reason=reason, cleanup=cleanup)
        return False

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


def _cancelled(outcomes: Sequence[tuple[ServerStatus, str | None]]) -> str:
    """What a cancelled run did: `2 server(s) done, 1 stopped, 3 not started` (a server that
    finished its last step after the cancel was asked is done too)."""
    count = Counter(status for status, _ in outcomes)
    said = [f"{count[ServerStatus.DONE]} server(s) done"]
    for status, words in _CANCEL_WORDS:
        if count[status]:
            said.append(f"{count[status]} {words}")
    return ", ".join(said)


_CANCEL_WORDS = (
    (ServerStatus.CANCELLED, "stopped"),
    (ServerStatus.FAILED, "failed"),
    (ServerStatus.SKIPPED, "not started"),
)


def _partly(kind: RunKind, outcomes: Sequence[tuple[ServerStatus, str | None]]) -> str:
    """What a run that partly failed did: in servers, or a roll's in servers replaced (two
    slots each, roll.tally)."""
    statuses = [status for status, _ in outcomes]
    if kind == RunKind.ROLL:
        return roll.tally(statuses).words()
    failed = statuses.count(ServerStatus.FAILED)
    reason = f"{failed} of {len(statuses)} failed"
    skipped = statuses.count(ServerStatus.SKIPPED)
    if skipped:  # serial stops at the first failure: say what it never began
        reason += f", {skipped} not started"
    return reason


def _change(
    slot: _Slot, at: str, events: Sequence[ServerEvent], unless: tuple[ServerEvent, ...]
) -> SlotChange:
    """The slot's next write: what it has pending (a call's result, the step's end, a probe's
    measurement) and ``events``."""
    pending, slot.pending = slot.pending, []
    found, slot.measured = slot.measured, []
    return SlotChange(
        slot.run.id,
        slot.record.slot,
        at,
        (*pending, *events),
        unless,
        tuple(found),
    )


def _cancellable(slot: _Slot) -> bool:
    """Once a roll's batch removes its old servers it finishes, so the fleet keeps its size."""
    return not (slot.run.kind == RunKind.ROLL and not roll.is_new(slot.record.slot))
