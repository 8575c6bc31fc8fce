"""How `status` and `history` scale: 10,000 past runs and 1,000 live servers in the database.

Runs are written straight into a real SQLite file; servers are real local-provider servers.
Prints the median time of each command over ``ROUNDS`` (target: under 100 ms).
Usage: .venv/bin/python -m bench.store_scale [RUNS] [SERVERS]
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.config.loader import load_config
from pipeline.execution.runner import Runner
from pipeline.services.caller import Caller
from pipeline.services.service import Service
from pipeline.state.store import Store
from providers.base import TAG_APP, TAG_ENV, TAG_RUN, LaunchRequest, ServerSpec
from providers.local import LocalProvider

ROUNDS = 20
NOW = datetime(2026, 11, 26, tzinfo=UTC)


class Quiet:
    def run_changed(self, run: object) -> None:
        pass


def fill(store: Store, runs: int, servers: list[str]) -> None:
    # Rows written straight into the file: only the volume matters here, not how they came.
    with sqlite3.connect(store.path) as conn:
        for n in range(runs):
            at = (NOW - timedelta(minutes=runs - n)).isoformat()
            state = "succeeded" if n % 7 else "partially_failed"
            conn.execute(
                """INSERT INTO runs (kind, app, env, state, requester, created_at, updated_at,
                current, desired, image_id, image_name, strategy, max_parallel, target,
                approvals_needed) VALUES ('scale_up', ?, 'production', ?, 'UALICE', ?, ?, 0, 1,
                'img', 'img', 'parallel', 5, 'lb', 1)""",
                [f"app{n % 10}", state, at, at],
            )
            run_id = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.execute("INSERT INTO approvals VALUES (?, 'UBOB', ?)", [run_id, at])
            key = servers[n] if n < len(servers) else f"byoi-{store.install_id}-{run_id}-1"
            conn.execute(
                """INSERT INTO servers (run_id, slot, key, status, step, provider_id, updated_at)
                VALUES (?, 1, ?, 'done', 'register', ?, ?)""",
                [run_id, key, key, at],
            )


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    servers = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "m.yml").write_text("production:\n  rails:\n    configuration: {}\n")
        apps = "".join(
            f"  app{n}:\n    manifest: m.yml\n    provider: local\n    image: family:base\n"
            f"    approvers: [UBOB]\n    deploy_command: 'true'\n    max_servers: 1000\n"
            for n in range(10)
        )
        (root / "byoi.yml").write_text(f"database: byoi.db\napps:\n{apps}")
        config = load_config(root / "byoi.yml")
        provider = LocalProvider(root / ".byoi" / "local")
        image = provider.create_image("base", {"/etc/hostname": "x\n"}, family="base")
        keys = []
        for n in range(servers):
            key = f"byoi-bench-{n}-1"
            provider.launch(
                LaunchRequest(
                    key,
                    key,
                    image,
                    ServerSpec(),
                    {TAG_APP: "app0", TAG_ENV: "production", TAG_RUN: str(n + 1)},
                )
            )
            keys.append(key)
        store = Store(config.database)
        fill(store, runs, keys)
        runner = Runner(
            store=store,
            config=config,
            provider_for=lambda _: provider,
            notifier=Quiet(),
            clock=lambda: NOW,
        )
        service = Service(
            config=config, store=store, provider_for=lambda _: provider, runner=runner
        )
        rows = []
        for command in ("history", "history app3", "status app0", "status app5", "images app0"):
            timings = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                service.handle(command, Caller("UALICE"), NOW)
                timings.append((time.perf_counter() - started) * 1000)
            rows.append((command, statistics.median(timings), max(timings)))
        store.close()
    print(
        f"{runs} runs and {servers} live servers (local provider, all in app0/production); "
        f"median of {ROUNDS}"
    )
    print(f"{'command':<14} {'median ms':>10} {'max ms':>8}")
    for command, median, worst in rows:
        print(f"{command:<14} {median:10.1f} {worst:8.1f}")


if __name__ == "__main__":
    main()
