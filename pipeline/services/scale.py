"""`scale <app> <count|+n|-n>`: plan servers up or down, and submit the plan for approval."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from pipeline.config.model import EnvConfig
from pipeline.domain import commands as cmd
from pipeline.domain import plans
from pipeline.domain.models import RunKind
from pipeline.errors import UserError
from pipeline.services import lookup, planning
from pipeline.services.caller import Caller
from pipeline.services.context import Context
from pipeline.services.replies import InfoReply, Plan, RunReply
from providers.base import NotFound


def scale(ctx: Context, command: cmd.Scale, caller: Caller, now: datetime) -> RunReply | InfoReply:
    env = lookup.free_target(ctx, command.app, command.env, cmd.USAGE["scale"], caller, now)
    with lookup.provider_errors(env, explain=True):
        current = planning.fleet_size(ctx, env)  # counted: a scale-up lists no server
        desired = current + command.count if command.relative else command.count
        plans.bounds(env, current, desired)
        if desired == current:
            return InfoReply(
                f"{env.app}/{env.name} already runs {desired} server(s); nothing to do."
            )
        plan = _plan(ctx, env, command, current, desired, caller, now)
    refusal = plans.image_refusal(plan.staleness, explicit=command.image is not None)
    if plan.kind == RunKind.SCALE_UP and refusal is not None:
        raise UserError(
            f"Image {plan.image.name} cannot be used: {refusal}. "
            f"Refresh it (`refresh {env.app}`) or pass --image."
        )
    if command.dry_run:
        return RunReply(plan, None, "Dry run: nothing was started.")
    return planning.submit(ctx, plan, env, caller, now)


def _plan(
    ctx: Context,
    env: EnvConfig,
    command: cmd.Scale,
    current: int,
    desired: int,
    caller: Caller,
    now: datetime,
) -> Plan:
    """Which image new servers get, and which servers leave (oldest image first)."""
    ref = command.image or env.image
    try:
        image = ctx.provider_for(env.provider).resolve_image(ref)
    except NotFound as exc:
        raise UserError(
            f"{env.provider} said: {exc.reason}. `images {env.app}` lists the images it has."
        ) from exc
    kind = RunKind.SCALE_UP if desired > current else RunKind.SCALE_DOWN
    plan = planning.plan_for(
        ctx,
        env,
        kind,
        image,
        caller,
        now,
        current=current,
        desired=desired,
        strategy=command.strategy,
    )
    if desired > current:
        return replace(plan, dry_run=command.dry_run)
    leaving = planning.oldest_first(ctx, env, lookup.fleet(ctx, env))[: current - desired]
    return replace(plan, servers=tuple(leaving), dry_run=command.dry_run)
