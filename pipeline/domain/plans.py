"""Planning rules: the bounds of a count, which image may be cloned, the slots of a new run."""

from __future__ import annotations

from datetime import datetime

from pipeline.config.model import EnvConfig
from pipeline.domain import commands as cmd
from pipeline.domain.models import RunServer, ServerStatus
from pipeline.domain.staleness import FindingKind, Staleness
from pipeline.errors import UserError


def image_refusal(staleness: Staleness, *, explicit: bool) -> str | None:
    """Obsolete images are never cloned; deprecated ones only when asked for by --image."""
    if staleness.blocking is not None:
        return staleness.blocking.detail
    deprecated = next((f for f in staleness.findings if f.kind == FindingKind.DEPRECATED), None)
    if deprecated is not None and not explicit:
        return deprecated.detail
    return None


def slot(slot: int, provider_id: str | None) -> RunServer:
    return RunServer(
        run_id=0,
        slot=slot,
        key="",
        status=ServerStatus.PENDING,
        step=None,
        provider_id=provider_id,
        registered=False,
        reason=None,
        cleanup=None,
        note=None,
        updated_at=datetime.min,
    )


def bounds(env: EnvConfig, current: int, desired: int) -> None:
    """Raises UserError when ``desired`` servers is more or fewer than ``env`` allows."""
    where = f"{env.app}/{env.name}"
    if desired < 0:
        raise UserError(
            f"{where} runs {current} server(s); that would go below zero.", cmd.USAGE["scale"]
        )
    if desired > env.max_servers:
        raise UserError(
            f"{desired} is above max_servers ({env.max_servers}) for {where}; "
            "raise max_servers in byoi.yml to go further.",
            cmd.USAGE["scale"],
        )
    if desired < env.min_servers:
        raise UserError(
            f"{desired} is below min_servers ({env.min_servers}) for {where}.", cmd.USAGE["scale"]
        )
