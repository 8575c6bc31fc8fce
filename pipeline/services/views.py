"""The read-only views behind `status`, `images`, `history`, `alerts`, and the scan."""

from __future__ import annotations

from datetime import datetime

from pipeline.config.model import AppConfig, Config, EnvConfig
from pipeline.domain import commands as cmd
from pipeline.domain.staleness import assess
from pipeline.execution import scan
from pipeline.ports import ProviderFor
from pipeline.services import adoption
from pipeline.services.replies import (
    AlertsReply,
    EnvStatus,
    ErrorReply,
    HistoryReply,
    ImagesReply,
    ImageView,
    Reply,
    ScanReply,
    ServerView,
    StatusReply,
)
from pipeline.state import measured
from pipeline.state.store import Store
from providers.base import TAG_APP, TAG_ENV, VERSION_TAG_PREFIX, Image, ProviderError, Server


def _tagged(server: Server) -> dict[str, str]:
    """Versions written on a server's tags (by a byoi with another database, say)."""
    return {
        k.removeprefix(VERSION_TAG_PREFIX): v
        for k, v in server.tags.items()
        if k.startswith(VERSION_TAG_PREFIX)
    }


class Views:
    def __init__(self, config: Config, store: Store, provider_for: ProviderFor) -> None:
        self.config = config
        self.store = store
        self.provider_for = provider_for

    def app(self, name: str, usage: str) -> AppConfig | ErrorReply:
        """The app called ``name``, or the error to show (with ``usage``)."""
        app = self.config.apps.get(name)
        if app is None:
            known = ", ".join(sorted(self.config.apps)) or "none configured"
            return ErrorReply(f"Unknown app `{name}` (apps: {known}).", usage)
        return app

    def fleet(self, env: EnvConfig) -> list[Server]:
        """This installation's servers of ``env``: the only ones any plan may touch."""
        return self.fleets(env)[0]

    def fleets(self, env: EnvConfig) -> tuple[list[Server], list[Server]]:
        """(ours, others): servers carrying env's tags, split by which installation owns them."""
        tagged = self.provider_for(env.provider).list_servers({TAG_APP: env.app, TAG_ENV: env.name})
        return adoption.ownership(self.store).split(tagged)

    def _envs(self, app_name: str | None, usage: str) -> list[EnvConfig] | ErrorReply:
        if app_name is None:
            return [e for a in self.config.apps.values() for e in a.environments.values()]
        app = self.app(app_name, usage)
        if isinstance(app, ErrorReply):
            return app
        return list(app.environments.values())

    def status(self, app_name: str | None, now: datetime) -> Reply:
        envs = self._envs(app_name, cmd.USAGE["status"])
        if isinstance(envs, ErrorReply):
            return envs
        views = []
        for env in envs:
            active = self.store.active_run(env.app, env.name)
            try:
                fleet, others = self.fleets(env)
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
                for s in fleet
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

    def images(self, app_name: str | None, now: datetime) -> Reply:
        envs = self._envs(app_name, cmd.USAGE["images"])
        if isinstance(envs, ErrorReply):
            return envs
        views = []
        for env in envs:
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

    def alerts(self, app_name: str | None, now: datetime) -> Reply:
        if app_name is not None:
            app = self.app(app_name, cmd.USAGE["alerts"])
            if isinstance(app, ErrorReply):
                return app
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
        """This installation's servers of ``env`` and what the probes measured on them."""
        found = measured.of_servers(self.store, env.app, env.name)
        return self.fleet(env), {k: dict(v.versions) for k, v in found.items()}

    def history(self, app_name: str | None) -> Reply:
        if app_name is not None:
            app = self.app(app_name, cmd.USAGE["history"])
            if isinstance(app, ErrorReply):
                return app
        return HistoryReply(tuple(self.store.runs(app_name, limit=10)))
