"""Runs, the servers a run works on, and their states."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class RunKind(StrEnum):
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    REFRESH = "refresh"
    """Snapshot a live server (``refresh --from``)."""
    BAKE = "bake"
    """Build an image on a builder server: bake script, scrub, probes, snapshot."""
    ROLL = "roll"
    PRUNE = "prune"


class RunState(StrEnum):
    PLANNED = "planned"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_FAILED = "partially_failed"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in ACTIVE_STATES

    @property
    def terminal(self) -> bool:
        return self not in ACTIVE_STATES


ACTIVE_STATES = frozenset(
    (RunState.PLANNED, RunState.AWAITING_APPROVAL, RunState.APPROVED, RunState.RUNNING)
)


class Strategy(StrEnum):
    PARALLEL = "parallel"
    SERIAL = "serial"


class Step(StrEnum):
    CLONE = "clone"
    SCRUB = "scrub"
    DEPLOY = "deploy"
    REGISTER = "register"
    DRAIN = "drain"
    TERMINATE = "terminate"
    SNAPSHOT = "snapshot"
    PROBE = "probe"
    BAKE = "bake"
    DELETE = "delete"


SCALE_UP_STEPS = (Step.CLONE, Step.SCRUB, Step.DEPLOY, Step.PROBE, Step.REGISTER)
SCALE_DOWN_STEPS = (Step.DRAIN, Step.TERMINATE)
REFRESH_STEPS = (Step.PROBE, Step.SNAPSHOT)
BAKE_STEPS = (Step.CLONE, Step.BAKE, Step.SCRUB, Step.PROBE, Step.SNAPSHOT)
PRUNE_STEPS = (Step.DELETE,)
STEPS = {
    RunKind.SCALE_UP: SCALE_UP_STEPS,
    RunKind.SCALE_DOWN: SCALE_DOWN_STEPS,
    RunKind.REFRESH: REFRESH_STEPS,
    RunKind.BAKE: BAKE_STEPS,
    RunKind.PRUNE: PRUNE_STEPS,
}
# A roll's odd slots are new servers (SCALE_UP_STEPS), its even slots old ones (SCALE_DOWN_STEPS).


def steps_of(kind: RunKind, slot: int) -> tuple[Step, ...]:
    if kind == RunKind.ROLL:
        return SCALE_UP_STEPS if slot % 2 == 1 else SCALE_DOWN_STEPS
    return STEPS[kind]


def creates_server(kind: RunKind, slot: int) -> bool:
    """Whether this slot launches a server (which a failure or the reconciler must remove)."""
    return kind in (RunKind.SCALE_UP, RunKind.BAKE) or (kind == RunKind.ROLL and slot % 2 == 1)


class ServerStatus(StrEnum):
    PENDING = "pending"
    WORKING = "working"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self not in (ServerStatus.PENDING, ServerStatus.WORKING)


@dataclass
class RunServer:
    """One server slot of a run: a server to build, remove or snapshot.

    Read-only by convention, not frozen: a run of a thousand servers is read whole for every
    card edit, `status` and run end, and a frozen dataclass costs three times as much to build.
    A change goes to the store and is read back, never made to a read copy."""

    run_id: int
    slot: int
    key: str
    """Idempotency key: provider token, server name and `byoi:key` tag."""
    status: ServerStatus
    step: Step | None
    provider_id: str | None
    registered: bool
    reason: str | None
    cleanup: str | None
    note: str | None
    """What the last step reported, e.g. what scrub removed."""
    updated_at: datetime


@dataclass(frozen=True)
class Run:
    id: int
    kind: RunKind
    app: str
    env: str
    state: RunState
    requester: str
    created_at: datetime
    updated_at: datetime
    current: int
    desired: int
    image_id: str
    image_name: str
    strategy: Strategy
    max_parallel: int
    target: str
    approvals_needed: int
    expires_at: datetime | None
    image_created_at: datetime | None = None
    image_versions: Mapping[str, str] = field(default_factory=dict)
    cancel_requested: bool = False
    reason: str | None = None
    notes: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    channel: str | None = None
    shown_as: str | None = None
    """Where the run is shown: an opaque reference owned by the front end that shows it."""
    servers: tuple[RunServer, ...] = field(default=())

    @property
    def label(self) -> str:
        return f"run {self.id}"


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    run_id: int | None
    actor: str
    event: str
    detail: str
