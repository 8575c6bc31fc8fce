"""A run's approval and its end before it finishes: approve, reject, cancel, and the expiry of
approvals that never came."""

from __future__ import annotations

from datetime import datetime

from pipeline.domain import policy
from pipeline.domain.models import ACTIVE_STATES, Run, RunKind, RunState
from pipeline.errors import Refused
from pipeline.services import lookup
from pipeline.services.caller import Caller
from pipeline.services.context import Context
from pipeline.services.replies import RunReply
from pipeline.state import measured


def approve(ctx: Context, run_id: int, caller: Caller, now: datetime) -> RunReply:
    run, env = lookup.run_for(ctx, run_id, caller)
    if run.state != RunState.AWAITING_APPROVAL:
        return already(run)
    refusal = policy.approval_refusal(caller.user, run, env, ctx.config.groups, caller.groups)
    if refusal:
        ctx.store.audit(now, run.id, caller.user, "approval_refused", refusal)
        raise Refused(refusal)
    result = ctx.store.approve(run_id, caller.user, now)
    if result.started:
        ctx.runner.start(run_id)
        return RunReply(None, result.run, f"Approved by {caller.user}; starting.")
    if result.run.state == RunState.EXPIRED:
        return RunReply(
            None, result.run, f"Run {run_id} expired before it was approved; request it again."
        )
    if result.recorded:
        left = result.run.approvals_needed - len(result.run.approvers)
        return RunReply(None, result.run, f"Approved by {caller.user}; {left} more needed.")
    return already(result.run)


def reject(ctx: Context, run_id: int, caller: Caller, now: datetime) -> RunReply:
    run, env = lookup.run_for(ctx, run_id, caller)
    if not policy.is_member(caller.user, env.approval.approvers, ctx.config.groups, caller.groups):
        ctx.store.audit(now, run.id, caller.user, "rejection_refused", "not an approver")
        raise Refused(f"You are not an approver for {env.app}/{env.name}.")
    if not ctx.store.transition(
        run_id,
        [RunState.AWAITING_APPROVAL],
        RunState.REJECTED,
        now,
        actor=caller.user,
        reason=f"rejected by {caller.user}",
    ):
        return already(ctx.store.run(run_id) or run)
    return RunReply(None, ctx.store.run(run_id), f"Rejected by {caller.user}.")


def cancel(ctx: Context, run_id: int, caller: Caller, now: datetime) -> RunReply:
    run, env = lookup.run_for(ctx, run_id, caller)
    where = f"{env.app}/{env.name}"
    refusal = f"Only the requester, operators or approvers of {where} may cancel run {run_id}."
    lookup.operate(ctx, run, env, caller, refusal)
    if ctx.store.transition(
        run_id,
        [RunState.AWAITING_APPROVAL, RunState.PLANNED],
        RunState.CANCELLED,
        now,
        actor=caller.user,
        reason=f"cancelled by {caller.user}",
    ):
        return RunReply(None, ctx.store.run(run_id), "Cancelled before it started.")
    if run.state not in ACTIVE_STATES:
        return already(run)
    if ctx.store.cancel_requested(run_id):
        return RunReply(None, run, f"Run {run.id} is already being cancelled.")
    ctx.store.request_cancel(run_id, now, caller.user)
    if run.kind == RunKind.ROLL:
        _unpause_for_cancel(ctx, run_id)
    return RunReply(None, ctx.store.run(run_id), _cancelling(run.kind))


def _cancelling(kind: RunKind) -> str:
    """What a cancel does, said when it is asked: a scale-down takes servers out, not in."""
    if kind == RunKind.SCALE_DOWN:
        return "Cancelling: servers already removed stay removed, the others stay in service."
    return "Cancelling: finished servers stay, servers in flight are rolled back."


def _unpause_for_cancel(ctx: Context, run_id: int) -> None:
    """A cancelled roll that waits after its canary must run once more to roll the canary back."""
    if measured.options_of(ctx.store, run_id).paused:
        measured.set_paused(ctx.store, run_id, paused=False, continued=False)
        ctx.runner.start(run_id)


def expire_due(ctx: Context, now: datetime) -> list[Run]:
    """Expire pending approvals whose time is up; returns the runs that expired."""
    expired = []
    for run in ctx.store.runs_in([RunState.AWAITING_APPROVAL]):
        if (
            run.expires_at
            and now >= run.expires_at
            and ctx.store.transition(
                run.id,
                [RunState.AWAITING_APPROVAL],
                RunState.EXPIRED,
                now,
                actor="byoi",
                reason="no approval in time",
            )
        ):
            expired.append(ctx.store.run(run.id) or run)
    return expired


def already(run: Run) -> RunReply:
    """What a click or command on a run that moved on already is told."""
    names = ", ".join(run.approvers)
    if not run.approvers or run.state in (RunState.REJECTED, RunState.EXPIRED):
        by = ""
    elif run.state == RunState.APPROVED:
        by = f" by {names}"
    else:
        by = f" (approved by {names})"
    return RunReply(None, run, f"Run {run.id} {_ALREADY[run.state]}{by}.")


_ALREADY = {
    RunState.PLANNED: "is already planned",
    RunState.AWAITING_APPROVAL: "is already awaiting approval",
    RunState.APPROVED: "is already approved",
    RunState.RUNNING: "is already running",
    RunState.SUCCEEDED: "has already succeeded",
    RunState.PARTIALLY_FAILED: "has already finished, partly failed",
    RunState.FAILED: "has already failed",
    RunState.REJECTED: "was already rejected",
    RunState.EXPIRED: "has already expired",
    RunState.CANCELLED: "was already cancelled",
}
