"""Plans of the image lifecycle: refresh (bake or snapshot), roll, continue, and images prune.

Functions of the Service (bound there) so the scale path stays as it was; each plans a run and
submits it through the same approval path as a scale.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline.config.model import EnvConfig
from pipeline.domain import commands as cmd
from pipeline.domain import plans, policy, roll
from pipeline.domain.measured import RunOptions
from pipeline.domain.models import RunKind, RunState, Strategy
from pipeline.domain.staleness import assess
from pipeline.execution import bake
from pipeline.services.replies import ErrorReply, InfoReply, Plan, Reply, RunReply
from pipeline.state import measured
from providers.base import TAG_FAMILY, Image, ProviderError, Server

if TYPE_CHECKING:
    from pipeline.services.caller import Caller
    from pipeline.services.service import Service


def _plan(
    service: Service,
    env: EnvConfig,
    kind: RunKind,
    fleet: int,
    image: Image,
    caller: Caller,
    now: datetime,
    **extra: object,
) -> Plan:
    return Plan(
        app=env.app,
        env=env.name,
        kind=kind,
        current=fleet,
        desired=fleet,
        image=image,
        staleness=assess(
            image, env.versions, max_age_days=service.config.stale.max_age_days, now=now
        ),
        strategy=Strategy.PARALLEL,
        target=env.target,
        requester=caller.user,
        approvals_needed=env.approval.approvals if env.approval.required else 0,
        approvers=env.approval.approvers,
        **extra,  # type: ignore[arg-type]
    )


def refresh(service: Service, command: cmd.Refresh, caller: Caller, now: datetime) -> Reply:
    """Bake on a builder from the env's image, or (--from) snapshot a live server."""
    usage = cmd.USAGE["refresh"]
    env = service._free_target(command.app, command.env, usage, caller, now)
    if isinstance(env, ErrorReply):
        return env
    try:
        fleet = service.views.fleet(env)
        image = service.provider_for(env.provider).resolve_image(env.image)
    except ProviderError as exc:
        return ErrorReply(f"{env.provider} said: {exc.reason}")
    options = RunOptions(0, force=command.force)
    if command.source is None:
        plan = _plan(service, env, RunKind.BAKE, len(fleet), image, caller, now)
        return service._submit(plan, env, caller, now, options)
    source = next((s for s in fleet if command.source in (s.id, s.name)), None)
    if source is None:
        return ErrorReply(
            f"{env.app}/{env.name} has no server `{command.source}` to snapshot.", usage
        )
    plan = _plan(service, env, RunKind.REFRESH, len(fleet), image, caller, now, removals=(source,))
    return service._submit(plan, env, caller, now, options)


def roll_onto(service: Service, command: cmd.Roll, caller: Caller, now: datetime) -> Reply:
    """Replace every server not on the env's image (or --image), batch by batch."""
    usage = cmd.USAGE["roll"]
    env = service._free_target(command.app, command.env, usage, caller, now)
    if isinstance(env, ErrorReply):
        return env
    try:
        fleet = service.views.fleet(env)
        image = service.provider_for(env.provider).resolve_image(command.image or env.image)
        stale = [s for s in fleet if s.image_id != image.id]
        ordered = service._removals(env, stale, len(stale)) if stale else []
    except ProviderError as exc:
        return ErrorReply(f"{env.provider} said: {exc.reason}")
    if not ordered:
        return InfoReply(
            f"All {len(fleet)} server(s) of {env.app}/{env.name} already run {image.name}."
        )
    size = roll.batch_size(command.batch, len(ordered))
    if size is None:
        return ErrorReply(f"`{command.batch}` is not a batch.", usage)
    size = min(size, len(ordered))
    if len(fleet) + size > env.max_servers:
        return ErrorReply(
            f"A batch of {size} would take {env.app}/{env.name} to {len(fleet) + size} "
            f"servers, above max_servers ({env.max_servers}); use a smaller --batch.",
            usage,
        )
    staleness = assess(image, env.versions, max_age_days=service.config.stale.max_age_days, now=now)
    refusal = plans.image_refusal(staleness, explicit=command.image is not None)
    if refusal is not None:
        return ErrorReply(f"Image {image.name} cannot be used: {refusal}.")
    plan = _plan(
        service,
        env,
        RunKind.ROLL,
        len(fleet),
        image,
        caller,
        now,
        removals=tuple(ordered),
        batch_size=size,
        canary=command.canary,
    )
    options = RunOptions(0, batch_size=size, canary=command.canary)
    return service._submit(plan, env, caller, now, options)


def roll_slots(removals: tuple[Server, ...]) -> list[tuple[int, str | None]]:
    """(slot, provider id) of a roll: a new server, then the old one it replaces."""
    slots: list[tuple[int, str | None]] = []
    for pair, old in enumerate(removals, start=1):
        slots += [(roll.new_slot(pair), None), (roll.old_slot(pair), old.id)]
    return slots


def go_on(service: Service, run_id: int, caller: Caller, now: datetime) -> Reply:
    """`continue <run>`: a roll paused after its canary replaces the rest."""
    found = service._run_for(run_id, caller)
    if isinstance(found, ErrorReply):
        return found
    run, env = found
    allowed = [*env.operators, *env.approval.approvers]
    if caller.user != run.requester and not policy.is_member(
        caller.user, allowed, service.config.groups, caller.groups
    ):
        return ErrorReply(f"Only operators or approvers of {env.app}/{env.name} may continue it.")
    options = measured.options_of(service.store, run_id)
    if run.kind != RunKind.ROLL or run.state != RunState.RUNNING or not options.paused:
        return ErrorReply(f"Run {run_id} is not a roll waiting after its canary.")
    if not measured.set_paused(service.store, run_id, paused=False, continued=True):
        return RunReply(None, run, f"Run {run_id} is already continuing.")
    service.store.transition(
        run_id,
        [RunState.RUNNING],
        RunState.RUNNING,
        now,
        actor=caller.user,
        reason=f"continued by {caller.user} after the canary",
    )
    service.runner.start(run_id)
    return RunReply(None, service.store.run(run_id), f"Continued by {caller.user}.")


def unpause_for_cancel(service: Service, run_id: int) -> None:
    """A cancelled roll that waits after its canary must run once more to roll the canary back."""
    if measured.options_of(service.store, run_id).paused:
        measured.set_paused(service.store, run_id, paused=False, continued=False)
        service.runner.start(run_id)


def prune(service: Service, command: cmd.Prune, caller: Caller, now: datetime) -> Reply:
    """Delete family images no server uses that are not among the ``keep`` newest."""
    usage = cmd.USAGE["images"]
    env = service._free_target(command.app, command.env, usage, caller, now)
    if isinstance(env, ErrorReply):
        return env
    family = bake.family(env)
    if family is None:
        return ErrorReply(f"{env.app}/{env.name} names one image, not a family; nothing to prune.")
    provider = service.provider_for(env.provider)
    try:
        current = provider.resolve_image(env.image)
        images = [i for i in provider.list_images(family) if _in_family(i, family)]
        used = {s.image_id for s in provider.list_servers({})}
    except ProviderError as exc:
        return ErrorReply(f"{env.provider} said: {exc.reason}")
    newest = sorted(images, key=lambda i: (i.created_at, i.id), reverse=True)
    doomed = [i for i in newest[command.keep :] if i.id not in used and i.id != current.id]
    if not doomed:
        return InfoReply(
            f"Nothing to prune in family {family}: {len(images)} image(s), keeping "
            f"{command.keep} and every image a server uses."
        )
    plan = _plan(
        service, env, RunKind.PRUNE, len(images), current, caller, now, images=tuple(doomed)
    )
    plan = replace(plan, desired=len(images) - len(doomed))
    return service._submit(plan, env, caller, now, None)


def _in_family(image: Image, family: str) -> bool:
    """Only images byoi's family marks name (AMI tag, GCE family, local metadata)."""
    return image.family == family or image.tags.get(TAG_FAMILY) == family
