"""From a plan to a stored run: the plan every kind of run starts from, the order in which
servers leave, and submitting a plan through the approval path."""

from __future__ import annotations

from datetime import datetime, timedelta

from pipeline.config.model import EnvConfig
from pipeline.domain import plans, roll
from pipeline.domain.measured import RunOptions
from pipeline.domain.models import Run, RunKind, RunServer, RunState, Strategy
from pipeline.domain.staleness import assess
from pipeline.services import adoption
from pipeline.services.caller import Caller
from pipeline.services.context import Context
from pipeline.services.lookup import busy
from pipeline.services.replies import Plan, RunReply
from pipeline.state.store import ActiveRunExists
from providers.base import TAG_APP, TAG_ENV, Image, ProviderError, Server, count_servers


def plan_for(
    ctx: Context,
    env: EnvConfig,
    kind: RunKind,
    image: Image,
    caller: Caller,
    now: datetime,
    *,
    current: int,
    desired: int | None = None,
    strategy: Strategy = Strategy.PARALLEL,
) -> Plan:
    """A plan of ``kind`` in ``env`` on ``image``, judged against the manifest's versions."""
    staleness = assess(image, env.versions, max_age_days=ctx.config.stale.max_age_days, now=now)
    return Plan(
        app=env.app,
        env=env.name,
        kind=kind,
        current=current,
        desired=current if desired is None else desired,
        image=image,
        staleness=staleness,
        strategy=strategy,
        target=env.target,
        requester=caller.user,
        approvals_needed=env.approval.approvals if env.approval.required else 0,
        approvers=env.approval.approvers,
    )


def fleet_size(ctx: Context, env: EnvConfig) -> int:
    """How many of ``env``'s servers this installation owns (``lookup.fleet``'s length),
    counted without listing them where the provider can."""
    tags = {TAG_APP: env.app, TAG_ENV: env.name}
    keys = adoption.ownership(ctx.store).keys
    return count_servers(ctx.provider_for(env.provider), tags, keys)


def oldest_first(ctx: Context, env: EnvConfig, servers: list[Server]) -> list[Server]:
    """The order servers leave in: oldest image first, then oldest server; unknown images
    (deleted, say) first of all."""
    provider = ctx.provider_for(env.provider)
    created: dict[str, datetime] = {}
    for image_id in {s.image_id for s in servers}:
        try:
            created[image_id] = provider.resolve_image(image_id).created_at
        except ProviderError:
            created[image_id] = datetime.min.replace(tzinfo=servers[0].created_at.tzinfo)
    return sorted(servers, key=lambda s: (created[s.image_id], s.created_at, s.id))


def submit(
    ctx: Context,
    plan: Plan,
    env: EnvConfig,
    caller: Caller,
    now: datetime,
    options: RunOptions | None = None,
) -> RunReply:
    """Store the plan as a run, waiting for approval or started at once when none is needed."""
    try:
        stored = ctx.store.create_run(_run(plan, env, caller, now), now, options)
    except ActiveRunExists as exc:
        raise busy(exc.run, now) from None
    if plan.approvals_needed == 0:
        ctx.runner.start(stored.id)
    return RunReply(plan, stored)


def _run(plan: Plan, env: EnvConfig, caller: Caller, now: datetime) -> Run:
    needs_approval = plan.approvals_needed > 0
    expiry = timedelta(minutes=env.approval.expiry_minutes)
    return Run(
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
        expires_at=now + expiry if needs_approval else None,
        notes=tuple(f.detail for f in plan.staleness.findings),
        channel=caller.channel,
        servers=_slots(plan),
    )


def _slots(plan: Plan) -> tuple[RunServer, ...]:
    """The run's slots: what each new server fills, or which server, image or pair it touches."""
    if plan.kind in (RunKind.SCALE_UP, RunKind.BAKE):
        count = 1 if plan.kind == RunKind.BAKE else plan.desired - plan.current
        return tuple(plans.slot(i, None) for i in range(1, count + 1))
    if plan.kind == RunKind.ROLL:
        return tuple(plans.slot(i, p) for i, p in _roll_slots(plan.servers))
    if plan.kind == RunKind.PRUNE:
        return tuple(plans.slot(i, image.id) for i, image in enumerate(plan.images, start=1))
    return tuple(plans.slot(i, s.id) for i, s in enumerate(plan.servers, start=1))


def _roll_slots(old_servers: tuple[Server, ...]) -> list[tuple[int, str | None]]:
    """(slot, provider id) of a roll: a new server, then the old one it replaces."""
    slots: list[tuple[int, str | None]] = []
    for pair, old in enumerate(old_servers, start=1):
        slots += [(roll.new_slot(pair), None), (roll.old_slot(pair), old.id)]
    return slots
