"""The stale-image check: for every app and environment, the image the next scale would use."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from pipeline import probes
from pipeline.config import Config, EnvConfig
from pipeline.runner import ProviderFor
from pipeline.staleness import Finding, FindingKind, Staleness, assess
from providers.base import TAG_APP, TAG_ENV, Image, ProviderError, Server

Measured = Mapping[str, Mapping[str, str]]
"""Measured versions by provider server id."""


@dataclass(frozen=True)
class Observation:
    app: str
    env: str
    ref: str
    channel: str | None
    image: Image | None
    staleness: Staleness | None
    error: str | None = None

    @property
    def findings(self) -> int:
        return len(self.staleness.findings) if self.staleness else 0


def scan(
    config: Config,
    provider_for: ProviderFor,
    now: datetime,
    measured: Callable[[EnvConfig], Measured] | None = None,
) -> list[Observation]:
    """Resolve each environment's image once per distinct reference and judge it; with
    ``measured`` (versions by server id), judge the env's live servers against it too."""
    seen: dict[tuple[str, str], Image | ProviderError] = {}
    found = []
    for app in config.apps.values():
        for env in app.environments.values():
            key = (env.provider, env.image)
            if key not in seen:
                try:
                    seen[key] = provider_for(env.provider).resolve_image(env.image)
                except ProviderError as exc:
                    seen[key] = exc
            image = seen[key]
            if isinstance(image, ProviderError):
                found.append(
                    Observation(
                        app.name, env.name, env.image, env.channel, None, None, image.reason
                    )
                )
                continue
            staleness = assess(image, env.versions, max_age_days=config.stale.max_age_days, now=now)
            if measured is not None:
                staleness = _with_fleet(staleness, env, image, provider_for, measured)
            found.append(Observation(app.name, env.name, env.image, env.channel, image, staleness))
    return found


def _with_fleet(
    staleness: Staleness,
    env: EnvConfig,
    image: Image,
    provider_for: ProviderFor,
    measured: Callable[[EnvConfig], Measured],
) -> Staleness:
    try:
        fleet = provider_for(env.provider).list_servers({TAG_APP: env.app, TAG_ENV: env.name})
    except ProviderError:
        return staleness  # the image was judged; the fleet is judged on the next scan
    finding = fleet_drift(image, fleet, measured(env))
    return replace(staleness, findings=(*staleness.findings, finding)) if finding else staleness


def fleet_drift(image: Image, fleet: list[Server], measured: Measured) -> Finding | None:
    """`2 of 3 servers run ruby_version 3.1.2 (image has 3.2.2), 2 another image → roll`."""
    behind = [s for s in fleet if s.image_id != image.id]
    differ: Counter[str] = Counter()
    drifted = set()
    for server in fleet:
        have = measured.get(server.id, {})
        for key, want in sorted(image.versions.items()):
            got = have.get(key, probes.UNKNOWN)
            if probes.normal(got) != probes.normal(want):
                differ[f"{key} {got} (image has {want})"] += 1
                drifted.add(server.id)
    if not behind and not drifted:
        return None
    count = len({s.id for s in behind} | drifted)
    parts = [f"{n} run {what}" for what, n in sorted(differ.items())]
    if behind:
        parts.append(f"{len(behind)} run another image than {image.name}")
    return Finding(
        FindingKind.FLEET,
        f"{count} of {len(fleet)} server(s) differ from the image: {'; '.join(parts)} → roll",
    )
