"""The stale-image check: for every app and environment, the image the next scale would use."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from pipeline.config.model import Config, EnvConfig
from pipeline.domain.alerts import Sighting
from pipeline.domain.staleness import Finding, FindingKind, Staleness, assess
from pipeline.execution import probes
from pipeline.ports import ProviderFor
from providers.base import Image, ProviderError, Server

Measured = Mapping[str, Mapping[str, str]]
"""Measured versions by provider server id."""
Fleet = Callable[[EnvConfig], tuple[list[Server], Measured]]
"""This installation's live servers of an env, and their measured versions."""


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
    fleet: Fleet | None = None,
) -> list[Observation]:
    """Resolve each environment's image once per distinct reference and judge it; with
    ``fleet`` (this installation's servers and their measured versions), judge them too."""
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
            if fleet is not None:
                staleness = _with_fleet(staleness, env, image, fleet)
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


def _with_fleet(
    staleness: Staleness,
    env: EnvConfig,
    image: Image,
    fleet: Fleet,
) -> Staleness:
    try:
        servers, measured = fleet(env)
    except ProviderError:
        return staleness  # the image was judged; the fleet is judged on the next scan
    finding = fleet_drift(image, servers, measured)
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
