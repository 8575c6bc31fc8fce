"""What the service answers: plain values that each front end renders their own way. What goes
wrong is raised instead (pipeline/errors.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.domain.alerts import Alert, Changes
from pipeline.domain.models import Run, RunKind, Strategy
from pipeline.domain.staleness import Staleness
from pipeline.execution.scan import Observation
from providers.base import Image, Server


@dataclass(frozen=True)
class InfoReply:
    message: str
    ephemeral: bool = True


@dataclass(frozen=True)
class HelpReply:
    lines: tuple[tuple[str, str], ...]
    """(usage, summary) pairs."""


@dataclass(frozen=True)
class Plan:
    app: str
    env: str
    kind: RunKind
    current: int
    desired: int
    image: Image
    staleness: Staleness
    strategy: Strategy
    target: str
    requester: str
    approvals_needed: int
    approvers: tuple[str, ...]
    servers: tuple[Server, ...] = ()
    """The live servers the run acts on: those a scale-down or a roll removes, or the one a
    refresh snapshots (``--from``)."""
    dry_run: bool = False
    images: tuple[Image, ...] = ()
    """Images a prune deletes."""
    batch_size: int = 0
    """A roll's batch: new servers launched before as many old ones are removed."""
    canary: bool = False


@dataclass(frozen=True)
class RunReply:
    """A run's card: the plan, and the run once it exists (None for --dry-run)."""

    plan: Plan | None
    run: Run | None
    message: str = ""


@dataclass(frozen=True)
class ServerView:
    server: Server
    image_name: str
    image_age_days: int | None
    versions: Mapping[str, str] = field(default_factory=dict)
    """What the probes measured on this server."""


@dataclass(frozen=True)
class EnvStatus:
    app: str
    env: str
    servers: tuple[ServerView, ...]
    active_run: Run | None
    error: str | None = None
    others: tuple[Server, ...] = ()
    """Servers with this app's tags that another installation (or a person) made: shown
    apart as not managed here, never counted or touched."""


@dataclass(frozen=True)
class StatusReply:
    envs: tuple[EnvStatus, ...]


@dataclass(frozen=True)
class ImageView:
    app: str
    env: str
    ref: str
    image: Image | None
    staleness: Staleness | None
    declared: dict[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ImagesReply:
    images: tuple[ImageView, ...]
    now: datetime


@dataclass(frozen=True)
class HistoryReply:
    runs: tuple[Run, ...]
    cancelled_by: Mapping[int, str] = field(default_factory=dict)
    """Who asked to cancel (or roll back) each run that someone did, by run id."""


@dataclass(frozen=True)
class AlertsReply:
    alerts: tuple[Alert, ...]
    now: datetime
    message: str = ""


@dataclass(frozen=True)
class ScanReply:
    observations: tuple[Observation, ...]
    changes: Changes
    now: datetime

    @property
    def findings(self) -> int:
        return sum(o.findings for o in self.observations)


Reply = (
    InfoReply
    | HelpReply
    | RunReply
    | StatusReply
    | ImagesReply
    | HistoryReply
    | AlertsReply
    | ScanReply
)
