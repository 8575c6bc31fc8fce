"""Is an image fit to clone from? Age, drift from declared versions, and deprecation.

A pure function of (image, declared versions, max age, now), so it is tested by tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from providers.base import Image, ImageState


class FindingKind(StrEnum):
    AGE = "age"
    DRIFT = "drift"
    UNKNOWN = "unknown"
    DEPRECATED = "deprecated"
    OBSOLETE = "obsolete"
    FLEET = "fleet"
    """Live servers on another image, or whose measured versions differ from the image's."""


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    detail: str

    @property
    def blocking(self) -> bool:
        """An obsolete or deleted image must not be cloned."""
        return self.kind == FindingKind.OBSOLETE


@dataclass(frozen=True)
class Staleness:
    age_days: int
    findings: tuple[Finding, ...]

    @property
    def fresh(self) -> bool:
        return not self.findings

    @property
    def blocking(self) -> Finding | None:
        return next((f for f in self.findings if f.blocking), None)

    def summary(self) -> str:
        if self.fresh:
            return "fresh"
        return "; ".join(f.detail for f in self.findings)


def assess(
    image: Image, declared: Mapping[str, str], *, max_age_days: int, now: datetime
) -> Staleness:
    age_days = max(0, (now - image.created_at).days)
    findings: list[Finding] = []
    if age_days > max_age_days:
        findings.append(Finding(FindingKind.AGE, f"{age_days} days old (limit {max_age_days})"))
    findings.extend(_drift(image.versions, declared))
    findings.extend(_deprecation(image, now))
    return Staleness(age_days, tuple(findings))


def _drift(recorded: Mapping[str, str], declared: Mapping[str, str]) -> list[Finding]:
    if not declared:
        return []
    if not recorded:
        names = ", ".join(sorted(declared))
        return [Finding(FindingKind.UNKNOWN, f"versions unknown: the image records none ({names})")]
    found = []
    for key in sorted(declared):
        have = recorded.get(key)
        if have is None:
            found.append(Finding(FindingKind.UNKNOWN, f"{key} unknown (declared {declared[key]})"))
        elif _normal(have) != _normal(declared[key]):
            found.append(Finding(FindingKind.DRIFT, f"{key} {have} → {declared[key]}"))
    return found


def _normal(version: str) -> str:
    # GCP labels cannot hold dots: 2.7.0 is recorded as 2-7-0.
    return version.strip().lower().replace("-", ".").replace("_", ".")


def _deprecation(image: Image, now: datetime) -> list[Finding]:
    if image.state in (ImageState.OBSOLETE, ImageState.DELETED):
        return [Finding(FindingKind.OBSOLETE, f"image is {image.state.value}")]
    if image.state == ImageState.DEPRECATED:
        return [Finding(FindingKind.DEPRECATED, "image is deprecated")]
    if image.deprecated_at and image.deprecated_at <= now:
        when = image.deprecated_at.date().isoformat()
        return [Finding(FindingKind.DEPRECATED, f"image deprecated since {when}")]
    return []
