"""A scan as plain JSON, for `byoi scan --json`: data for scripts, not wording for people."""

from __future__ import annotations

from typing import Any

from pipeline.services.replies import ScanReply


def as_json(reply: ScanReply) -> dict[str, Any]:
    envs = []
    for obs in reply.observations:
        entry: dict[str, Any] = {"app": obs.app, "env": obs.env, "ref": obs.ref}
        if obs.image is None or obs.staleness is None:
            entry["error"] = obs.error
        else:
            entry["image"] = {
                "id": obs.image.id,
                "name": obs.image.name,
                "created_at": obs.image.created_at.isoformat(),
                "state": obs.image.state.value,
                "versions": dict(obs.image.versions),
            }
            entry["age_days"] = obs.staleness.age_days
            entry["findings"] = [
                {"kind": f.kind.value, "detail": f.detail} for f in obs.staleness.findings
            ]
        envs.append(entry)
    return {
        "checked_at": reply.now.isoformat(),
        "findings": reply.findings,
        "alerts": {
            "new": len(reply.changes.new),
            "reminded": len(reply.changes.reminded),
            "resolved": len(reply.changes.resolved),
        },
        "environments": envs,
    }
