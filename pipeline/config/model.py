"""The configuration as values: the applications, their environments and the policy around them
(read from byoi.yml and the Cloud 66 manifests by pipeline/config/loader.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from providers.base import ServerSpec

VENDORS = {
    "aws": "aws",
    "googlecloud": "gcp",
    "gcp": "gcp",
    "digitalocean": "digitalocean",
    "local": "local",
}
DEFAULT_SCRUB_PATHS = (
    "/etc/machine-id",
    "/var/lib/dbus/machine-id",
    "/etc/ssh/ssh_host_*",
    "/var/lib/cloud/instance",
    "/var/lib/cloud/instances",
    "/var/log/cloud-init*.log",
)
APP_SCRUB_DIRS = ("current", "releases", "shared", ".env", "log")


class ThreadUpdates(StrEnum):
    """What a run's thread carries besides failures and the summary."""

    PHASES = "phases"
    """A reply per step phase, edited as servers progress."""
    FAILURES = "failures"
    """Nothing more: failures and the summary only."""


@dataclass(frozen=True)
class ApprovalPolicy:
    required: bool = True
    approvers: tuple[str, ...] = ()
    approvals: int = 1
    self_approval: bool = False
    expiry_minutes: int = 30


@dataclass(frozen=True)
class DeployConfig:
    app_dir: str = "/srv/app"
    command: str = ""
    health_command: str = ""
    release: str = "latest"
    scrub_paths: tuple[str, ...] = DEFAULT_SCRUB_PATHS
    timeout_seconds: float = 600.0


@dataclass(frozen=True)
class EnvConfig:
    """Everything byoi needs to run one app in one environment."""

    app: str
    name: str
    provider: str
    image: str
    target: str
    spec: ServerSpec
    versions: Mapping[str, str]
    operators: tuple[str, ...]
    approval: ApprovalPolicy
    deploy: DeployConfig
    min_servers: int
    max_servers: int
    max_parallel: int
    drain_seconds: float
    channel: str | None
    component: str
    thread_updates: ThreadUpdates = ThreadUpdates.PHASES
    probes: Mapping[str, str] = field(default_factory=dict)
    """Configured probes (version key → command); defaults come from pipeline.execution.probes."""
    bake: str = ""


@dataclass(frozen=True)
class AppConfig:
    name: str
    manifest: str
    default_env: str | None
    environments: Mapping[str, EnvConfig]


@dataclass(frozen=True)
class StalePolicy:
    max_age_days: int = 30
    schedule: str = "0 9 * * mon-fri"
    interval_seconds: float | None = None
    """Instead of ``schedule``: check every so many seconds (for tests and tight loops)."""
    remind_every: timedelta = timedelta(days=1)
    """An unresolved alert is reminded at most this often, whatever the check interval."""


@dataclass(frozen=True)
class Config:
    path: Path
    apps: Mapping[str, AppConfig]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    database: Path = Path("byoi.db")
    timezone: str = "UTC"
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    stale: StalePolicy = StalePolicy()

    def providers_in_use(self) -> set[str]:
        return {e.provider for a in self.apps.values() for e in a.environments.values()}
