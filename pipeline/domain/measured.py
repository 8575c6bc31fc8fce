"""What byoi measured and made beside the runs: server versions, refreshed images, run options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Measurement:
    provider_id: str
    image_id: str
    versions: Mapping[str, str]
    measured_at: datetime


@dataclass(frozen=True)
class RunImage:
    """The image a refresh run made; unpublished when a measured version missed the declared."""

    run_id: int
    image_id: str
    image_name: str
    versions: Mapping[str, str]
    published: bool
    forced: bool = False
    mismatches: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    run_id: int
    batch_size: int = 1
    canary: bool = False
    paused: bool = False
    continued: bool = False
    force: bool = False
