"""Finding what a command names, and whether the caller may touch it: each lookup returns the
thing or raises the UserError that says why not."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from pipeline.config.model import AppConfig, Config, EnvConfig
from pipeline.domain import failures, policy
from pipeline.domain.models import Run
from pipeline.errors import Busy, ProviderFailed, Refused, UserError
from pipeline.services import adoption
from pipeline.services.caller import Caller
from pipeline.services.context import Context
from providers.base import TAG_APP, TAG_ENV, ProviderError, Server

log = logging.getLogger(__name__)


def app_named(config: Config, name: str, usage: str) -> AppConfig:
    app = config.apps.get(name)
    if app is None:
        known = ", ".join(sorted(config.apps)) or "none configured"
        raise UserError(f"Unknown app `{name}` (apps: {known}).", usage)
    return app


def env_named(app: AppConfig, name: str | None, usage: str) -> EnvConfig:
    names = ", ".join(app.environments)
    chosen = name or app.default_env
    if chosen is None:
        raise UserError(
            f"{app.name} has several environments ({names}); say which with --env.", usage
        )
    env = app.environments.get(chosen)
    if env is None:
        raise UserError(f"{app.name} has no environment `{chosen}` (environments: {names}).", usage)
    return env


def free_target(
    ctx: Context, app_name: str, env_name: str | None, usage: str, caller: Caller, now: datetime
) -> EnvConfig:
    """The environment to start a run in, if the caller may and no run is active there."""
    env = env_named(app_named(ctx.config, app_name, usage), env_name, usage)
    refusal = policy.request_refusal(caller.user, env, ctx.config.groups, caller.groups)
    if refusal:
        raise Refused(refusal)
    active = ctx.store.active_run(env.app, env.name)
    if active is not None:
        raise busy(active, now)
    return env


def busy(active: Run, now: datetime) -> Busy:
    minutes = max(0, int((now - active.created_at).total_seconds() // 60))
    return Busy(
        f"{active.app}/{active.env} already has run {active.id} "
        f"({active.state.value.replace('_', ' ')}, "
        f"requested by {active.requester} {minutes} min ago). Wait for it, or "
        f"`cancel {active.id}`."
    )


def run_for(ctx: Context, run_id: int, caller: Caller) -> tuple[Run, EnvConfig]:
    """The run ``run_id`` and its environment, if the caller may act on it from here."""
    run = ctx.store.run(run_id)
    if run is None:
        raise UserError(f"There is no run {run_id}.")
    if caller.channel and run.channel and caller.channel != run.channel:
        raise Refused(f"Run {run_id} belongs to another channel; act on it there.")
    app = ctx.config.apps.get(run.app)
    env = app.environments.get(run.env) if app else None
    if env is None:
        raise UserError(f"Run {run_id} is for {run.app}/{run.env}, which is no longer configured.")
    return run, env


def operate(ctx: Context, run: Run, env: EnvConfig, caller: Caller, refusal: str) -> None:
    """Only the requester, operators or approvers may steer a run; raises ``refusal`` if not."""
    allowed = [*env.operators, *env.approval.approvers]
    if caller.user != run.requester and not policy.is_member(
        caller.user, allowed, ctx.config.groups, caller.groups
    ):
        raise Refused(refusal)


def fleets(ctx: Context, env: EnvConfig) -> tuple[list[Server], list[Server]]:
    """(ours, others): servers carrying env's tags, split by which installation owns them."""
    tagged = ctx.provider_for(env.provider).list_servers({TAG_APP: env.app, TAG_ENV: env.name})
    return adoption.ownership(ctx.store).split(tagged)


def fleet(ctx: Context, env: EnvConfig) -> list[Server]:
    """This installation's servers of ``env``: the only ones any plan may touch."""
    return fleets(ctx, env)[0]


@contextmanager
def provider_errors(env: EnvConfig, *, explain: bool = False) -> Iterator[None]:
    """A provider error inside becomes ProviderFailed; with ``explain``, capacity, quota and
    throttling are said as what to try (the raw text goes to the log)."""
    try:
        yield
    except ProviderError as exc:
        if explain and failures.is_explained(exc):
            log.warning("%s/%s: %s", env.app, env.name, exc.reason)
            raise ProviderFailed(failures.explain(exc, env.provider, env.spec)) from exc
        raise ProviderFailed(f"{env.provider} said: {exc.reason}") from exc
