"""Runs and their server slots as rows of the runs and servers tables, and back."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline.domain.models import Run, RunKind, RunServer, RunState, ServerStatus, Step, Strategy

INSERT_RUN = """INSERT INTO runs (kind, app, env, state, requester, created_at, updated_at,
    current, desired, image_id, image_name, image_created_at, image_versions,
    strategy, max_parallel, target, approvals_needed, expires_at, notes, channel)
    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"""
INSERT_SLOT = """INSERT INTO servers (run_id, slot, key, status, step, provider_id,
    updated_at) VALUES (?,?,?,?,?,?,?)"""


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def run_values(run: Run, now: datetime) -> list[Any]:
    """The INSERT_RUN parameters of a new run requested at ``now``."""
    return [
        run.kind,
        run.app,
        run.env,
        run.state,
        run.requester,
        now.isoformat(),
        now.isoformat(),
        run.current,
        run.desired,
        run.image_id,
        run.image_name,
        iso(run.image_created_at),
        json.dumps(dict(run.image_versions)),
        run.strategy,
        run.max_parallel,
        run.target,
        run.approvals_needed,
        iso(run.expires_at),
        json.dumps(list(run.notes)),
        run.channel,
    ]


def slot_values(run_id: int, key: str, server: RunServer, now: datetime) -> list[Any]:
    """The INSERT_SLOT parameters of a new run's server slot, under its idempotency ``key``."""
    return [
        run_id,
        server.slot,
        key,
        server.status,
        server.step,
        server.provider_id,
        now.isoformat(),
    ]


SERVER_COLUMNS = (
    "run_id, slot, key, status, step, provider_id, registered, reason, cleanup, note, updated_at"
)
"""The columns ``servers_from`` reads, in order."""

STATUS_OF = {s.value: s for s in ServerStatus}
"""A server's status by its stored value (a lookup, not an Enum call per row)."""
_STEP = {s.value: s for s in Step}


def servers_inserted(values: Iterable[Sequence[Any]]) -> tuple[RunServer, ...]:
    """The slots of INSERT_SLOT parameters (``slot_values``) as ``servers_from`` reads them
    back: the columns INSERT_SLOT leaves out hold their defaults."""
    return servers_from((*v[:6], 0, None, None, None, v[6]) for v in values)


def servers_from(rows: Iterable[Sequence[Any]]) -> tuple[RunServer, ...]:
    """Slots from rows of ``SERVER_COLUMNS``. A run of a thousand servers is read whole for its
    card, its status and its end, so this reads tuples, not mappings, and looks the enums up."""
    parse = datetime.fromisoformat
    return tuple(
        RunServer(
            r[0],
            r[1],
            r[2],
            STATUS_OF[r[3]],
            _STEP[r[4]] if r[4] else None,
            r[5],
            bool(r[6]),
            r[7],
            r[8],
            r[9],
            parse(r[10]),
        )
        for r in rows
    )


def run_from(
    row: Mapping[str, Any], servers: tuple[RunServer, ...], approvers: tuple[str, ...]
) -> Run:
    created = datetime.fromisoformat(row["created_at"])
    return Run(
        id=row["id"],
        kind=RunKind(row["kind"]),
        app=row["app"],
        env=row["env"],
        state=RunState(row["state"]),
        requester=row["requester"],
        created_at=created,
        updated_at=parse_time(row["updated_at"]) or created,
        current=row["current"],
        desired=row["desired"],
        image_id=row["image_id"],
        image_name=row["image_name"],
        strategy=Strategy(row["strategy"]),
        max_parallel=row["max_parallel"],
        target=row["target"],
        approvals_needed=row["approvals_needed"],
        image_created_at=parse_time(row["image_created_at"]),
        image_versions=json.loads(row["image_versions"]),
        expires_at=parse_time(row["expires_at"]),
        cancel_requested=bool(row["cancel_requested"]),
        reason=row["reason"],
        notes=tuple(json.loads(row["notes"])),
        approvers=approvers,
        channel=row["channel"],
        shown_as=row["message_ts"],
        servers=servers,
    )
