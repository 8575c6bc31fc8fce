"""A run and a plan as both surfaces show them: what they do, to what, in which state, by whom."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.views.marks import PLAIN, Marks
from bot.views.words import (
    Freshness,
    days_old,
    expiry,
    freshness,
    moment,
    server_name,
    state_words,
    unit,
    verb,
    versions_line,
)
from pipeline.domain.models import Run, RunKind, RunServer, RunState, ServerStatus
from pipeline.services.replies import Plan


@dataclass(frozen=True)
class Action:
    """What a run or plan does: `scale up` `web/production`: `2 → 5` `server(s)`."""

    verb: str
    where: str
    current: int
    desired: int
    unit: str

    @property
    def counts(self) -> str:
        return f"{self.current} → {self.desired}"

    def headline(self, m: Marks = PLAIN) -> str:
        """`scale up web/production: 2 → 5` (the unit is the caller's to add)."""
        return f"{self.verb} {m.strong(self.where)}: {self.counts}"

    @property
    def entry(self) -> str:
        """As a history line lists it: `web/production scale up 2 → 5`."""
        return f"{self.where} {self.verb} {self.counts}"


def action(kind: RunKind, app: str, env: str, current: int, desired: int) -> Action:
    return Action(verb(kind), f"{app}/{env}", current, desired, unit(kind))


@dataclass(frozen=True)
class Facts:
    """The image a run or plan launches from, and how it goes about it."""

    image_name: str
    image_age: str
    versions: str
    freshness: Freshness
    strategy: str
    target: str


@dataclass(frozen=True)
class SlotView:
    """One server of a run."""

    name: str
    step: str | None
    """The step it is at; None before its first."""
    status: ServerStatus
    reason: str | None
    cleanup: str | None
    ended: bool = False
    """Its run is over (a server that never started then waits for nothing)."""

    @property
    def never_started(self) -> bool:
        return self.ended and self.status == ServerStatus.PENDING

    @property
    def step_words(self) -> str:
        return self.step or ("-" if self.never_started else "waiting")

    @property
    def failed_at(self) -> str:
        return self.step or "start"

    @property
    def status_words(self) -> str:
        return "not started" if self.never_started else state_words(self.status)


def slot_view(server: RunServer, *, ended: bool = False) -> SlotView:
    """One server of a run; ``ended`` when the run is over."""
    step = server.step.value if server.step else None
    return SlotView(server_name(server), step, server.status, server.reason, server.cleanup, ended)


@dataclass(frozen=True)
class RunView:
    id: int
    kind: RunKind
    state: RunState
    state_words: str
    action: Action
    facts: Facts
    requester: str
    approvers: tuple[str, ...]
    approvals_missing: int
    expires: str
    reason: str | None
    created: str
    servers: tuple[SlotView, ...]

    @property
    def waiting(self) -> bool:
        return self.state == RunState.AWAITING_APPROVAL

    @property
    def done(self) -> int:
        return sum(s.status == ServerStatus.DONE for s in self.servers)

    @property
    def failed(self) -> int:
        return sum(s.status == ServerStatus.FAILED for s in self.servers)

    def approved_by(self, m: Marks = PLAIN) -> str:
        """`approved by UBOB, @ops`, or nothing while nobody approved."""
        if not self.approvers:
            return ""
        return "approved by " + ", ".join(m.person(a) for a in self.approvers)

    @property
    def in_flight(self) -> str:
        """The run as a line about its environment: `run 3 awaiting approval`."""
        return f"run {self.id} {self.state_words}"


def run_view(run: Run, now: datetime | None = None) -> RunView:
    """``now`` dates the image; without it the image's age is unknown."""
    age = None
    if now is not None and run.image_created_at is not None:
        age = max(0, (now - run.image_created_at).days)
    return RunView(
        id=run.id,
        kind=run.kind,
        state=run.state,
        state_words=state_words(run.state),
        action=action(run.kind, run.app, run.env, run.current, run.desired),
        facts=Facts(
            run.image_name,
            days_old(age),
            versions_line(run.image_versions),
            Freshness(run.notes),
            run.strategy.value,
            run.target,
        ),
        requester=run.requester,
        approvers=run.approvers,
        approvals_missing=run.approvals_needed - len(run.approvers),
        expires=expiry(run.expires_at),
        reason=run.reason,
        created=moment(run.created_at),
        servers=tuple(slot_view(s, ended=run.state.terminal) for s in run.servers),
    )


@dataclass(frozen=True)
class PlanView:
    action: Action
    facts: Facts
    image_id: str
    requester: str
    approvals_needed: int
    approvers: tuple[str, ...]
    removals: tuple[str, ...]
    """The servers it removes (a refresh's one source server)."""
    scope: tuple[str, str] | None
    """What the plan does beyond its counts, as a (label, words) fact."""
    run: RunView | None
    """The run made of it; None for a dry run."""


def plan_view(plan: Plan, run: Run | None = None) -> PlanView:
    return PlanView(
        action=action(plan.kind, plan.app, plan.env, plan.current, plan.desired),
        facts=Facts(
            plan.image.name,
            days_old(plan.staleness.age_days),
            versions_line(plan.image.versions),
            freshness(plan.staleness),
            plan.strategy.value,
            plan.target,
        ),
        image_id=plan.image.id,
        requester=plan.requester,
        approvals_needed=plan.approvals_needed,
        approvers=plan.approvers,
        removals=tuple(s.id for s in plan.servers),
        scope=_scope(plan),
        run=run_view(run) if run else None,
    )


def _scope(plan: Plan) -> tuple[str, str] | None:
    removed = ", ".join(s.id for s in plan.servers)
    if plan.kind == RunKind.BAKE:
        return "builder", "1 server from this image → bake → scrub → probes → snapshot"
    if plan.kind == RunKind.ROLL:
        canary = " · canary first, then pause" if plan.canary else ""
        return "replaces", (
            f"{len(plan.servers)} server(s) in batches of {plan.batch_size}, "
            f"surge first{canary}: {removed}"
        )
    if plan.kind == RunKind.PRUNE:
        return "deletes", ", ".join(f"{i.name} ({i.id})" for i in plan.images)
    if plan.servers and plan.kind == RunKind.REFRESH:
        return "source", f"{plan.servers[0].id} (snapshot into a new image)"
    if plan.servers:
        return "removes", f"{removed} (oldest image first)"
    return None
