"""The stale-image check: for every app and environment, the image the next scale would use."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from pipeline.config.model import Config
from pipeline.domain.alerts import Sighting
from pipeline.domain.staleness import Staleness, assess
from pipeline.ports import ProviderFor
from providers.base import Image, ProviderError


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


def scan(config: Config, provider_for: ProviderFor, now: datetime) -> list[Observation]:
    """Resolve each environment's image once per distinct reference and judge it."""
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
            found.append(Observation(app.name, env.name, env.image, env.channel, image, staleness))
    return found


def findings_of(observation: Observation) -> dict[str, str]:
    """Findings by kind (one alert each), details of the same kind joined."""
    grouped: dict[str, list[str]] = defaultdict(list)
    if observation.staleness:
        for finding in observation.staleness.findings:
            grouped[finding.kind.value].append(finding.detail)
    return {kind: "; ".join(details) for kind, details in grouped.items()}


def sightings(observations: list[Observation]) -> list[Sighting]:
    """What the alert table needs from a scan: every resolved image and its findings."""
    return [
        Sighting(o.app, o.env, o.image.id, o.image.name, o.channel, findings_of(o))
        for o in observations
        if o.image is not None
    ]


def checked(observations: list[Observation]) -> set[tuple[str, str]]:
    """The (app, env) pairs the scan could look at: only their alerts may be resolved."""
    return {(o.app, o.env) for o in observations if o.error is None}
