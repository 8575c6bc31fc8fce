"""The read-only views behind `status`, `images`, `history`, `alerts`, and the scan."""

from __future__ import annotations

import re
from datetime import datetime

from pipeline.config.model import EnvConfig
from pipeline.domain import commands as cmd
from pipeline.domain.staleness import assess
from pipeline.execution import scan
from pipeline.services import lookup
from pipeline.services.context import Context
from pipeline.services.replies import (
    AlertsReply,
    EnvStatus,
    HistoryReply,
    ImagesReply,
    ImageView,
    ScanReply,
    ServerView,
    StatusReply,
)
from pipeline.state import measured
from providers.base import TAG_RUN, VERSION_TAG_PREFIX, Image, ProviderError, Server


def _tagged(server: Server) -> dict[str, str]:
    """Versions written on a server's tags (by a byoi with another database, say)."""
    return {
        k.removeprefix(VERSION_TAG_PREFIX): v
        for k, v in server.tags.items()
        if k.startswith(VERSION_TAG_PREFIX)
    }


class Views:
    """The answers that change nothing; an unknown app named in the command is a UserError."""

    def __init__(self, ctx: Context) -> None:
        self.config = ctx.config
        self.store = ctx.store
        self.provider_for = ctx.provider_for
        self._ctx = ctx

    def _envs(self, app_name: str | None, usage: str) -> list[EnvConfig]:
        if app_name is None:
            return [e for a in self.config.apps.values() for e in a.environments.values()]
        return list(lookup.app_named(self.config, app_name, usage).environments.values())

    def status(self, app_name: str | None, now: datetime) -> StatusReply:
        views = []
        for env in self._envs(app_name, cmd.USAGE["status"]):
            active = self.store.active_run(env.app, env.name)
            try:
                fleet, others = lookup.fleets(self._ctx, env)
                images = self._image_names(env, fleet, now)
            except ProviderError as exc:
                views.append(EnvStatus(env.app, env.name, (), active, exc.reason))
                continue
            found = measured.of_servers(self.store, env.app, env.name)
            servers = tuple(
                ServerView(
                    s,
                    images.get(s.image_id, (s.image_id, None))[0],
                    images.get(s.image_id, (s.image_id, None))[1],
                    found[s.id].versions if s.id in found else _tagged(s),
                )
                for s in sorted(fleet, key=_in_order)
            )
            views.append(EnvStatus(env.app, env.name, servers, active, others=tuple(others)))
        return StatusReply(tuple(views))

    def _image_names(
        self, env: EnvConfig, fleet: list[Server], now: datetime
    ) -> dict[str, tuple[str, int]]:
        provider = self.provider_for(env.provider)
        found: dict[str, tuple[str, int]] = {}
        for image_id in {s.image_id for s in fleet}:
            try:
                image = provider.resolve_image(image_id)
            except ProviderError:
                continue
            found[image_id] = (image.name, (now - image.created_at).days)
        return found

    def images(self, app_name: str | None, now: datetime) -> ImagesReply:
        views = []
        for env in self._envs(app_name, cmd.USAGE["images"]):
            try:
                image: Image = self.provider_for(env.provider).resolve_image(env.image)
            except ProviderError as exc:
                views.append(
                    ImageView(
                        env.app, env.name, env.image, None, None, dict(env.versions), exc.reason
                    )
                )
                continue
            staleness = assess(
                image, env.versions, max_age_days=self.config.stale.max_age_days, now=now
            )
            views.append(
                ImageView(env.app, env.name, env.image, image, staleness, dict(env.versions))
            )
        return ImagesReply(tuple(views), now)

    def alerts(self, app_name: str | None, now: datetime) -> AlertsReply:
        if app_name is not None:
            lookup.app_named(self.config, app_name, cmd.USAGE["alerts"])
        return AlertsReply(tuple(self.store.alerts.unresolved(app_name)), now)

    def scan(self, now: datetime, trigger: str = "manual") -> ScanReply:
        """Run the stale-image check once and record what it found."""
        observations = scan.scan(self.config, self.provider_for, now, self._fleet_measured)
        changes = self.store.alerts.record_scan(
            scan.sightings(observations),
            scan.checked(observations),
            now,
            trigger,
            self.config.stale.remind_every,
        )
        return ScanReply(tuple(observations), changes, now)

    def _fleet_measured(self, env: EnvConfig) -> tuple[list[Server], dict[str, dict[str, str]]]:
        """This installation's servers of ``env`` and what the probes measured on them; a
        server of the env's run in flight is left out (not probed yet, it is no drift)."""
        found = measured.of_servers(self.store, env.app, env.name)
        active = self.store.active_run(env.app, env.name)
        busy = str(active.id) if active is not None else None
        fleet = [s for s in lookup.fleet(self._ctx, env) if s.tags.get(TAG_RUN) != busy]
        return fleet, {k: dict(v.versions) for k, v in found.items()}

    def history(self, app_name: str | None) -> HistoryReply:
        if app_name is not None:
            lookup.app_named(self.config, app_name, cmd.USAGE["history"])
        runs = tuple(self.store.runs(app_name, limit=10))
        return HistoryReply(runs, self.store.cancellers(r.id for r in runs))


def _in_order(server: Server) -> tuple[tuple[str | int, ...], str]:
    """Servers by key as people count: `web-2` before `web-10` (then by id). Split on digits,
    text and numbers alternate, so parts at one position are always of one type."""
    parts = re.split(r"(\d+)", server.key or server.id)
    return tuple(int(p) if p.isdigit() else p for p in parts), server.id
