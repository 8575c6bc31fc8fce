"""A byoi installation with a long history and a live fleet, for the scaling benchmarks.

``build(runs, servers)`` makes (once; later calls reuse it from ``.bench-cache/``) a byoi.yml of
ten apps on the local provider, a database of ``runs`` finished runs with their servers,
approvals and audit events as the runner writes them, and ``servers`` live local-provider
servers in app0/production, all accounted for by the first runs (ten servers each).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.config.loader import load_config
from pipeline.execution.runner import Runner
from pipeline.services.service import Service
from pipeline.state.store import Store
from providers.base import TAG_APP, TAG_ENV, TAG_RUN, LaunchRequest, ServerSpec
from providers.local import LocalProvider

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".bench-cache"
APPS = 10
PER_FLEET_RUN = 10
NOW = datetime(2026, 11, 26, tzinfo=UTC)
STEPS = ("clone", "scrub", "deploy", "register")
APP = """\
  app{n}:
    manifest: m.yml
    provider: local
    image: family:base
    approvers: [UBOB]
    deploy_command: 'true'
    max_servers: 5000
    channel: C0APP{n}
"""


class Quiet:
    needs_servers = False

    def run_changed(self, run: object) -> None:
        pass


@contextmanager
def copied_service(runs: int, servers: int) -> Iterator[Service]:
    """A Service on a copy of the installation's database (scale writes runs)."""
    built = build(runs, servers)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("byoi.yml", "m.yml", "byoi.db"):
            shutil.copy(built / name, root / name)
        config = load_config(root / "byoi.yml")
        provider = LocalProvider(built / "local")
        store = Store(config.database)
        runner = Runner(
            store=store,
            config=config,
            provider_for=lambda _: provider,
            notifier=Quiet(),
            clock=lambda: NOW,
        )
        try:
            yield Service(
                config=config, store=store, provider_for=lambda _: provider, runner=runner
            )
        finally:
            store.close()
            provider.close()


def build(runs: int, servers: int) -> Path:
    """The installation's directory (byoi.yml, byoi.db, local/), built if not cached."""
    root = CACHE / f"history-{runs}-{servers}"
    if (root / "ready").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "m.yml").write_text("production:\n  rails:\n    configuration: {}\n")
    apps = "".join(APP.format(n=n) for n in range(APPS))
    (root / "byoi.yml").write_text(
        f"database: byoi.db\nproviders:\n  local:\n    root: local\napps:\n{apps}"
    )
    store = Store(root / "byoi.db")
    keys = _fill(store, runs, servers)
    store.close()
    provider = LocalProvider(root / "local")
    image = provider.create_image("base", {"/etc/hostname": "x\n"}, family="base", created_at=NOW)
    for run_id, key in keys:
        tags = {TAG_APP: "app0", TAG_ENV: "production", TAG_RUN: str(run_id)}
        provider.launch(LaunchRequest(key, key, image, ServerSpec(), tags))
    provider.close()
    (root / "ready").write_text("")
    return root


def _fill(store: Store, runs: int, servers: int) -> list[tuple[int, str]]:
    """Write the runs; returns (run id, key) of the servers that are live."""
    fleet_runs = -(-servers // PER_FLEET_RUN)
    live: list[tuple[int, str]] = []
    with store.database.write() as conn:
        for start in range(0, runs, 5000):
            numbers = range(start, min(runs, start + 5000))
            rows = list(_runs(numbers, runs, fleet_runs, store.install_id))
            conn.executemany(
                """INSERT INTO runs (id, kind, app, env, state, requester, created_at,
                updated_at, current, desired, image_id, image_name, image_versions, strategy,
                max_parallel, target, approvals_needed, notes, channel, message_ts)
                VALUES (?, 'scale_up', ?, 'production', ?, 'UALICE', ?, ?, ?, ?, 'img-1',
                'base', '{}', 'parallel', 5, 'lb', 1, '[]', ?, ?)""",
                [r[0] for r in rows],
            )
            slots = [s for r in rows for s in r[1]]
            conn.executemany(
                """INSERT INTO servers (run_id, slot, key, status, step, provider_id, registered,
                note, updated_at) VALUES (?, ?, ?, ?, 'register', ?, 1, 'ok', ?)""",
                [(r, n, k, st, k, at) for r, n, k, st, at in slots],
            )
            conn.executemany(
                "INSERT INTO approvals VALUES (?, 'UBOB', ?)", [(r[0][0], r[0][4]) for r in rows]
            )
            conn.executemany(
                "INSERT INTO audit (at, run_id, actor, event, detail) VALUES (?, ?, ?, ?, ?)",
                [a for r in rows for a in r[2]],
            )
            live += [(s[0], s[2]) for s in slots if s[0] <= fleet_runs][: servers - len(live)]
    return live


Row = tuple[tuple[object, ...], list[tuple[int, int, str, str, str]], list[tuple[object, ...]]]


def _runs(numbers: range, runs: int, fleet_runs: int, install: str) -> Iterator[Row]:
    for n in numbers:
        run_id = n + 1
        at = (NOW - timedelta(minutes=5 * (runs - n))).isoformat()
        fleet = run_id <= fleet_runs
        app = "app0" if fleet else f"app{n % APPS}"
        count = PER_FLEET_RUN if fleet else 1
        state = "succeeded" if fleet or n % 7 else "failed"
        status = "done" if state == "succeeded" else "failed"
        run = (run_id, app, state, at, at, 0, count, f"C0{app.upper()}", f"{run_id}.000100")
        slots = [
            (run_id, slot, f"byoi-{install}-{run_id}-{slot}", status, at)
            for slot in range(1, count + 1)
        ]
        audit: list[tuple[object, ...]] = [
            (at, run_id, "UALICE", "requested", "scale_up 0→1 image base"),
            (at, run_id, "UBOB", "approved", ""),
            (at, run_id, "byoi", "running", ""),
        ]
        for slot in range(1, count + 1):
            for step in STEPS:
                detail = json.dumps({"slot": slot, "step": step})
                audit.append((at, run_id, "byoi", f"{step}_started", detail))
                audit.append((at, run_id, "byoi", f"{step}_done", detail))
            audit.append((at, run_id, "byoi", status, json.dumps({"slot": slot})))
        audit.append((at, run_id, "byoi", state, ""))
        yield run, slots, audit
