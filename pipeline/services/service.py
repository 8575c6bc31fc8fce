"""The operations behind every command: plan, approve, reject, cancel, and the read-only views.

Every front end calls ``Service.handle(text, caller, now)`` and render the Reply.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pipeline.config.model import AppConfig, Config, EnvConfig
from pipeline.domain import commands as cmd
from pipeline.domain import failures, plans, policy
from pipeline.domain.measured import RunOptions
from pipeline.domain.models import (
    ACTIVE_STATES,
    Run,
    RunKind,
    RunState,
)
from pipeline.domain.staleness import assess
from pipeline.execution.runner import Runner
from pipeline.ports import ProviderFor
from pipeline.services import alerts, lifecycle
from pipeline.services.caller import Caller
from pipeline.services.replies import (
    ErrorReply,
    HelpReply,
    Plan,
    Reply,
    RunReply,
)
from pipeline.services.views import Views
from pipeline.state.store import ActiveRunExists, Store
from providers.base import ProviderError, Server

log = logging.getLogger(__name__)


class Service:
    """Plans and changes runs; the read-only answers come from ``views``."""

    def __init__(
        self, *, config: Config, store: Store, provider_for: ProviderFor, runner: Runner
    ) -> None:
        self.config = config
        self.store = store
        self.provider_for = provider_for
        self.runner = runner
        self.views = Views(config, store, provider_for)

    def handle(self, text: str, caller: Caller, now: datetime) -> Reply:
        command = cmd.parse(text)
        if isinstance(command, cmd.CommandError):
            return ErrorReply(command.message, command.usage)
        return self.dispatch(command, caller, now)

    def dispatch(self, command: cmd.Command, caller: Caller, now: datetime) -> Reply:
        match command:
            case cmd.Help(topic):
                return _help(topic)
            case cmd.Scale():
                return self.scale(command, caller, now)
            case cmd.Approve(run_id):
                return self.approve(run_id, caller, now)
            case cmd.Reject(run_id):
                return self.reject(run_id, caller, now)
            case cmd.Cancel(run_id):
                return self.cancel(run_id, caller, now)
            case cmd.Status(app):
                return self.views.status(app, now)
            case cmd.Images(app):
                return self.views.images(app, now)
            case cmd.History(app):
                return self.views.history(app)
            case cmd.Refresh():
                return self.refresh(command, caller, now)
            case cmd.Roll():
                return lifecycle.roll_onto(self, command, caller, now)
            case cmd.Continue(run_id):
                return lifecycle.go_on(self, run_id, caller, now)
            case cmd.Prune():
                return lifecycle.prune(self, command, caller, now)
            case cmd.Alerts(app):
                return self.views.alerts(app, now)
            case cmd.Snooze(alert_id):
                return self.snooze(alert_id, caller, now)
        raise AssertionError(command)

    # lookups ----------------------------------------------------------------------------

    def _env(self, app: AppConfig, name: str | None, usage: str) -> EnvConfig | ErrorReply:
        names = ", ".join(app.environments)
        chosen = name or app.default_env
        if chosen is None:
            return ErrorReply(
                f"{app.name} has several environments ({names}); say which with --env.", usage
            )
        env = app.environments.get(chosen)
        if env is None:
            return ErrorReply(
                f"{app.name} has no environment `{chosen}` (environments: {names}).", usage
            )
        return env

    def _target(
        self, app_name: str, env_name: str | None, usage: str, caller: Caller
    ) -> EnvConfig | ErrorReply:
        app = self.views.app(app_name, usage)
        if isinstance(app, ErrorReply):
            return app
        env = self._env(app, env_name, usage)
        if isinstance(env, ErrorReply):
            return env
        refusal = policy.request_refusal(caller.user, env, self.config.groups, caller.groups)
        return ErrorReply(refusal) if refusal else env

    def _free_target(
        self, app_name: str, env_name: str | None, usage: str, caller: Caller, now: datetime
    ) -> EnvConfig | ErrorReply:
        """The environment to start a run in, if the caller may and no run is active there."""
        env = self._target(app_name, env_name, usage, caller)
        if isinstance(env, ErrorReply):
            return env
        active = self.store.active_run(env.app, env.name)
        return _busy(active, now) if active is not None else env

    # scale ------------------------------------------------------------------------------

    def scale(self, command: cmd.Scale, caller: Caller, now: datetime) -> Reply:
        usage = cmd.USAGE["scale"]
        env = self._free_target(command.app, command.env, usage, caller, now)
        if isinstance(env, ErrorReply):
            return env
        provider = self.provider_for(env.provider)
        try:
            fleet = self.views.fleet(env)
            current = len(fleet)
            desired = current + command.count if command.relative else command.count
            bounds = plans.bounds(env, current, desired)
            if bounds is not None:
                return bounds
            image = provider.resolve_image(command.image or env.image)
            staleness = assess(
                image, env.versions, max_age_days=self.config.stale.max_age_days, now=now
            )
            removals = self._removals(env, fleet, current - desired) if desired < current else ()
        except ProviderError as exc:
            return _provider_error(env, exc)
        kind = RunKind.SCALE_UP if desired > current else RunKind.SCALE_DOWN
        refusal = plans.image_refusal(staleness, explicit=command.image is not None)
        if kind == RunKind.SCALE_UP and refusal is not None:
            return ErrorReply(
                f"Image {image.name} cannot be used: {refusal}. "
                f"Refresh it (`refresh {env.app}`) or pass --image."
            )

        plan = Plan(
            app=env.app,
            env=env.name,
            kind=kind,
            current=current,
            desired=desired,
            image=image,
            staleness=staleness,
            strategy=command.strategy,
            target=env.target,
            requester=caller.user,
            approvals_needed=env.approval.approvals if env.approval.required else 0,
            approvers=env.approval.approvers,
            removals=tuple(removals),
            dry_run=command.dry_run,
        )
        if command.dry_run:
            return RunReply(plan, None, "Dry run: nothing was started.")
        return self._submit(plan, env, caller, now)

    def _removals(self, env: EnvConfig, fleet: list[Server], count: int) -> list[Server]:
        """Servers to remove: oldest image first, then oldest server; unknown images first."""
        provider = self.provider_for(env.provider)
        created: dict[str, datetime] = {}
        for image_id in {s.image_id for s in fleet}:
            try:
                created[image_id] = provider.resolve_image(image_id).created_at
            except ProviderError:
                created[image_id] = datetime.min.replace(tzinfo=fleet[0].created_at.tzinfo)
        ordered = sorted(fleet, key=lambda s: (created[s.image_id], s.created_at, s.id))
        return ordered[:count]

    def _submit(
        self,
        plan: Plan,
        env: EnvConfig,
        caller: Caller,
        now: datetime,
        options: RunOptions | None = None,
    ) -> Reply:
        needs_approval = plan.approvals_needed > 0
        if plan.kind in (RunKind.SCALE_UP, RunKind.BAKE):
            count = 1 if plan.kind == RunKind.BAKE else plan.desired - plan.current
            slots = [plans.slot(i, None) for i in range(1, count + 1)]
        elif plan.kind == RunKind.ROLL:
            slots = [plans.slot(i, p) for i, p in lifecycle.roll_slots(plan.removals)]
        elif plan.kind == RunKind.PRUNE:
            slots = [plans.slot(i, image.id) for i, image in enumerate(plan.images, start=1)]
        else:
            slots = [plans.slot(i, s.id) for i, s in enumerate(plan.removals, start=1)]
        run = Run(
            id=0,
            kind=plan.kind,
            app=plan.app,
            env=plan.env,
            state=RunState.AWAITING_APPROVAL if needs_approval else RunState.APPROVED,
            requester=caller.user,
            created_at=now,
            updated_at=now,
            current=plan.current,
            desired=plan.desired,
            image_id=plan.image.id,
            image_name=plan.image.name,
            image_created_at=plan.image.created_at,
            image_versions=dict(plan.image.versions),
            strategy=plan.strategy,
            max_parallel=plan.batch_size or env.max_parallel,
            target=plan.target,
            approvals_needed=plan.approvals_needed,
            expires_at=now + timedelta(minutes=env.approval.expiry_minutes)
            if needs_approval
            else None,
            notes=tuple(f.detail for f in plan.staleness.findings),
            channel=caller.channel,
            servers=tuple(slots),
        )
        try:
            stored = self.store.create_run(run, now, options)
        except ActiveRunExists as exc:
            return _busy(exc.run, now)
        if not needs_approval:
            self.runner.start(stored.id)
        return RunReply(plan, stored)

    # approvals --------------------------------------------------------------------------

    def _run_for(self, run_id: int, caller: Caller) -> tuple[Run, EnvConfig] | ErrorReply:
        run = self.store.run(run_id)
        if run is None:
            return ErrorReply(f"There is no run {run_id}.")
        if caller.channel and run.channel and caller.channel != run.channel:
            return ErrorReply(f"Run {run_id} belongs to another channel; act on it there.")
        app = self.config.apps.get(run.app)
        env = app.environments.get(run.env) if app else None
        if env is None:
            return ErrorReply(
                f"Run {run_id} is for {run.app}/{run.env}, which is no longer configured."
            )
        return run, env

    def expire_due(self, now: datetime) -> list[Run]:
        """Expire pending approvals whose time is up; returns the runs that expired."""
        expired = []
        for run in self.store.runs_in([RunState.AWAITING_APPROVAL]):
            if (
                run.expires_at
                and now >= run.expires_at
                and self.store.transition(
                    run.id,
                    [RunState.AWAITING_APPROVAL],
                    RunState.EXPIRED,
                    now,
                    actor="byoi",
                    reason="no approval in time",
                )
            ):
                expired.append(self.store.run(run.id) or run)
        return expired

    def approve(self, run_id: int, caller: Caller, now: datetime) -> Reply:
        found = self._run_for(run_id, caller)
        if isinstance(found, ErrorReply):
            return found
        run, env = found
        if run.state != RunState.AWAITING_APPROVAL:
            return _already(run)
        refusal = policy.approval_refusal(caller.user, run, env, self.config.groups, caller.groups)
        if refusal:
            self.store.audit(now, run.id, caller.user, "approval_refused", refusal)
            return ErrorReply(refusal)
        result = self.store.approve(run_id, caller.user, now)
        if result.started:
            self.runner.start(run_id)
            return RunReply(None, result.run, f"Approved by {caller.user}; starting.")
        if result.run.state == RunState.EXPIRED:
            return RunReply(
                None, result.run, f"Run {run_id} expired before it was approved; request it again."
            )
        if result.recorded:
            left = result.run.approvals_needed - len(result.run.approvers)
            return RunReply(None, result.run, f"Approved by {caller.user}; {left} more needed.")
        return _already(result.run)

    def reject(self, run_id: int, caller: Caller, now: datetime) -> Reply:
        found = self._run_for(run_id, caller)
        if isinstance(found, ErrorReply):
            return found
        run, env = found
        if not policy.is_member(
            caller.user, env.approval.approvers, self.config.groups, caller.groups
        ):
            self.store.audit(now, run.id, caller.user, "rejection_refused", "not an approver")
            return ErrorReply(f"You are not an approver for {env.app}/{env.name}.")
        if not self.store.transition(
            run_id,
            [RunState.AWAITING_APPROVAL],
            RunState.REJECTED,
            now,
            actor=caller.user,
            reason=f"rejected by {caller.user}",
        ):
            return _already(self.store.run(run_id) or run)
        return RunReply(None, self.store.run(run_id), f"Rejected by {caller.user}.")

    def cancel(self, run_id: int, caller: Caller, now: datetime) -> Reply:
        found = self._run_for(run_id, caller)
        if isinstance(found, ErrorReply):
            return found
        run, env = found
        allowed = [*env.operators, *env.approval.approvers]
        if caller.user != run.requester and not policy.is_member(
            caller.user, allowed, self.config.groups, caller.groups
        ):
            return ErrorReply(
                f"Only the requester, operators or approvers of {env.app}/"
                f"{env.name} may cancel run {run_id}."
            )
        if self.store.transition(
            run_id,
            [RunState.AWAITING_APPROVAL, RunState.PLANNED],
            RunState.CANCELLED,
            now,
            actor=caller.user,
            reason=f"cancelled by {caller.user}",
        ):
            return RunReply(None, self.store.run(run_id), "Cancelled before it started.")
        if run.state not in ACTIVE_STATES:
            return _already(run)
        self.store.request_cancel(run_id, now, caller.user)
        if run.kind == RunKind.ROLL:
            lifecycle.unpause_for_cancel(self, run_id)
        return RunReply(
            None,
            self.store.run(run_id),
            "Cancelling: finished servers stay, servers in flight are rolled back.",
        )

    # refresh ----------------------------------------------------------------------------

    def refresh(self, command: cmd.Refresh, caller: Caller, now: datetime) -> Reply:
        return lifecycle.refresh(self, command, caller, now)

    def snooze(self, alert_id: int, caller: Caller, now: datetime) -> Reply:
        return alerts.snooze(self.config, self.store, alert_id, caller, now)


def _provider_error(env: EnvConfig, exc: ProviderError) -> ErrorReply:
    if failures.is_explained(exc):
        log.warning("%s/%s: %s", env.app, env.name, exc.reason)
        return ErrorReply(failures.explain(exc, env.provider, env.spec))
    return ErrorReply(f"{env.provider} said: {exc.reason}")


def _busy(active: Run, now: datetime) -> ErrorReply:
    minutes = max(0, int((now - active.created_at).total_seconds() // 60))
    return ErrorReply(
        f"{active.app}/{active.env} already has run {active.id} "
        f"({active.state.value.replace('_', ' ')}, "
        f"requested by {active.requester} {minutes} min ago). Wait for it, or "
        f"`cancel {active.id}`."
    )


def _already(run: Run) -> Reply:
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


def _help(topic: str | None) -> Reply:
    names = [topic] if topic else list(cmd.USAGE)
    return HelpReply(tuple((cmd.USAGE[n], cmd.SUMMARY[n]) for n in names))
