"""The image lifecycle: refresh (bake or snapshot), roll, continue, and images prune.

Each plans a run and submits it through the same approval path as a scale.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from pipeline.config.model import EnvConfig
from pipeline.domain import commands as cmd
from pipeline.domain import plans, roll
from pipeline.domain.measured import RunOptions
from pipeline.domain.models import RunKind, RunState
from pipeline.errors import UserError
from pipeline.execution import bake
from pipeline.services import lookup, planning
from pipeline.services.caller import Caller
from pipeline.services.context import Context
from pipeline.services.replies import InfoReply, RunReply
from pipeline.state import measured
from providers.base import TAG_FAMILY, Image


def refresh(ctx: Context, command: cmd.Refresh, caller: Caller, now: datetime) -> RunReply:
    """Bake on a builder from the env's image, or (--from) snapshot a live server."""
    usage = cmd.USAGE["refresh"]
    env = lookup.free_target(ctx, command.app, command.env, usage, caller, now)
    options = RunOptions(0, force=command.force)
    with lookup.provider_errors(env):
        image = ctx.provider_for(env.provider).resolve_image(env.image)
        if command.source is None:  # a bake counts the fleet, it lists no server
            size = planning.fleet_size(ctx, env)
            plan = planning.plan_for(ctx, env, RunKind.BAKE, image, caller, now, current=size)
            return planning.submit(ctx, plan, env, caller, now, options)
        fleet = lookup.fleet(ctx, env)
    source = next((s for s in fleet if command.source in (s.id, s.name)), None)
    if source is None:
        raise UserError(
            f"{env.app}/{env.name} has no server `{command.source}` to snapshot.", usage
        )
    plan = planning.plan_for(ctx, env, RunKind.REFRESH, image, caller, now, current=len(fleet))
    return planning.submit(ctx, replace(plan, servers=(source,)), env, caller, now, options)


def roll_onto(
    ctx: Context, command: cmd.Roll, caller: Caller, now: datetime
) -> RunReply | InfoReply:
    """Replace every server not on the env's image (or --image), batch by batch."""
    usage = cmd.USAGE["roll"]
    env = lookup.free_target(ctx, command.app, command.env, usage, caller, now)
    with lookup.provider_errors(env):
        fleet = lookup.fleet(ctx, env)
        image = ctx.provider_for(env.provider).resolve_image(command.image or env.image)
        stale = [s for s in fleet if s.image_id != image.id]
        ordered = planning.oldest_first(ctx, env, stale) if stale else []
    if not ordered:
        return InfoReply(
            f"All {len(fleet)} server(s) of {env.app}/{env.name} already run {image.name}."
        )
    size = _batch(env, command.batch, len(fleet), len(ordered))
    plan = planning.plan_for(ctx, env, RunKind.ROLL, image, caller, now, current=len(fleet))
    refusal = plans.image_refusal(plan.staleness, explicit=command.image is not None)
    if refusal is not None:
        raise UserError(f"Image {image.name} cannot be used: {refusal}.")
    plan = replace(plan, servers=tuple(ordered), batch_size=size, canary=command.canary)
    options = RunOptions(0, batch_size=size, canary=command.canary)
    return planning.submit(ctx, plan, env, caller, now, options)


def _batch(env: EnvConfig, batch: str | None, fleet: int, stale: int) -> int:
    """How many servers a roll replaces at once, within max_servers while it surges."""
    usage = cmd.USAGE["roll"]
    size = roll.batch_size(batch, stale)
    if size is None:
        raise UserError(f"`{batch}` is not a batch.", usage)
    size = min(size, stale)
    if fleet + size > env.max_servers:
        raise UserError(
            f"A batch of {size} would take {env.app}/{env.name} to {fleet + size} "
            f"servers, above max_servers ({env.max_servers}); use a smaller --batch.",
            usage,
        )
    return size


def go_on(ctx: Context, run_id: int, caller: Caller, now: datetime) -> RunReply:
    """`continue <run>`: a roll paused after its canary replaces the rest."""
    run, env = lookup.run_for(ctx, run_id, caller)
    refusal = f"Only operators or approvers of {env.app}/{env.name} may continue it."
    lookup.operate(ctx, run, env, caller, refusal)
    options = measured.options_of(ctx.store, run_id)
    if run.kind != RunKind.ROLL or run.state != RunState.RUNNING or not options.paused:
        raise UserError(f"Run {run_id} is not a roll waiting after its canary.")
    if not measured.set_paused(ctx.store, run_id, paused=False, continued=True):
        return RunReply(None, run, f"Run {run_id} is already continuing.")
    why = f"continued by {caller.user} after the canary"
    ctx.store.transition(
        run_id, [RunState.RUNNING], RunState.RUNNING, now, actor=caller.user, reason=why
    )
    ctx.runner.start(run_id)
    return RunReply(None, ctx.store.run(run_id), f"Continued by {caller.user}.")


def prune(ctx: Context, command: cmd.Prune, caller: Caller, now: datetime) -> RunReply | InfoReply:
    """Delete family images no server uses that are not among the ``keep`` newest."""
    env = lookup.free_target(ctx, command.app, command.env, cmd.USAGE["images"], caller, now)
    family = bake.family(env)
    if family is None:
        raise UserError(f"{env.app}/{env.name} names one image, not a family; nothing to prune.")
    provider = ctx.provider_for(env.provider)
    with lookup.provider_errors(env):
        current = provider.resolve_image(env.image)
        images = [i for i in provider.list_images(family) if _in_family(i, family)]
        used = {s.image_id for s in provider.list_servers({})}
    newest = sorted(images, key=lambda i: (i.created_at, i.id), reverse=True)
    doomed = [i for i in newest[command.keep :] if i.id not in used and i.id != current.id]
    if not doomed:
        return InfoReply(
            f"Nothing to prune in family {family}: {len(images)} image(s), keeping "
            f"{command.keep} and every image a server uses."
        )
    plan = planning.plan_for(
        ctx,
        env,
        RunKind.PRUNE,
        current,
        caller,
        now,
        current=len(images),
        desired=len(images) - len(doomed),
    )
    return planning.submit(ctx, replace(plan, images=tuple(doomed)), env, caller, now)


def _in_family(image: Image, family: str) -> bool:
    """Only images byoi's family marks name (AMI tag, GCE family, local metadata)."""
    return image.family == family or image.tags.get(TAG_FAMILY) == family
