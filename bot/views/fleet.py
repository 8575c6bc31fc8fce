"""The fleet as both surfaces show it: each environment's servers, its image, the last scan."""

from __future__ import annotations

from dataclasses import dataclass

from bot.views.runs import RunView, run_view
from bot.views.words import Freshness, days_old, freshness, state_words, versions_line
from pipeline.domain.models import Run, ServerStatus
from pipeline.domain.ownership import owner_label
from pipeline.execution.scan import Observation
from pipeline.services.replies import EnvStatus, ImageView, ServerView


@dataclass(frozen=True)
class ServerRow:
    id: str
    state: str
    image_name: str
    age_days: int | None
    versions: str


@dataclass(frozen=True)
class EnvView:
    where: str
    servers: tuple[ServerRow, ...]
    error: str | None
    others: tuple[tuple[str, str], ...]
    """Servers not managed here, as (id, who made them)."""
    active: RunView | None

    @property
    def count(self) -> str:
        return f"{len(self.servers)} server(s)"

    @property
    def trouble(self) -> str:
        return f"could not list servers: {self.error}"

    def unmanaged(self, owners: str = "") -> str:
        """`not managed here: 2 server(s), never touched`; ``owners`` said after the count."""
        return f"not managed here: {len(self.others)} server(s){owners}, never touched"

    @property
    def owners(self) -> list[str]:
        return sorted({owner for _, owner in self.others})


def _row(view: ServerView, building: str | None = None) -> ServerRow:
    return ServerRow(
        id=view.server.id,
        state=state_words(view.server.state),
        image_name=view.image_name,
        age_days=view.image_age_days,
        versions=building if building and not view.versions else versions_line(view.versions),
    )


def env_view(env: EnvStatus) -> EnvView:
    run = env.active_run
    building = _building(run) if run else {}
    return EnvView(
        where=f"{env.app}/{env.env}",
        servers=tuple(_row(v, building.get(v.server.id)) for v in env.servers),
        error=env.error,
        others=tuple((s.id, owner_label(s)) for s in env.others),
        active=run_view(run) if run else None,
    )


def _building(run: Run) -> dict[str, str]:
    """Where each server ``run`` is still taking through its steps stands, by server id: it has
    measured nothing yet, so that is what its line says instead."""
    return {
        slot.provider_id: f"in run {run.id}: {f'{slot.step} ' if slot.step else ''}{slot.status}"
        for slot in run.servers
        if slot.provider_id and slot.status != ServerStatus.DONE
    }


@dataclass(frozen=True)
class ImageRow:
    """An environment's image; ``name`` is None (and ``error`` says why) when it is unknown."""

    where: str
    ref: str
    name: str | None
    id: str
    age: str
    age_days: int
    freshness: Freshness
    recorded: str
    declared: str
    error: str


def image_row(seen: ImageView | Observation) -> ImageRow:
    """An environment's image as `images` lists it, or as a scan saw it."""
    image, staleness = seen.image, seen.staleness
    found = image is not None and staleness is not None
    declared = seen.declared if isinstance(seen, ImageView) else {}
    return ImageRow(
        where=f"{seen.app}/{seen.env}",
        ref=seen.ref,
        name=image.name if image is not None and found else None,
        id=image.id if image is not None else "",
        age=days_old(staleness.age_days) if staleness else "",
        age_days=staleness.age_days if staleness else 0,
        freshness=freshness(staleness),
        recorded=versions_line(image.versions) if image is not None else "",
        declared=versions_line(declared),
        error=seen.error or "",
    )
