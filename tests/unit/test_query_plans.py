"""Active-run lookups use the partial index `runs_one_active` in every process.

The SQL must repeat the index's WHERE clause exactly; text built from a set would follow the
hash seed, so the plans are read in processes started with different ``PYTHONHASHSEED``s.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.domain.models import ACTIVE_STATES, Run, RunKind, RunState, Strategy
from pipeline.state.store import ACTIVE_ORDER, ACTIVE_SQL, ActiveRunExists, Store

NOW = datetime(2026, 11, 26, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def _run(app: str, state: RunState) -> Run:
    return Run(
        id=0,
        kind=RunKind.SCALE_UP,
        app=app,
        env="production",
        state=state,
        requester="UALICE",
        created_at=NOW,
        updated_at=NOW,
        current=0,
        desired=1,
        image_id="img",
        image_name="img",
        strategy=Strategy.PARALLEL,
        max_parallel=5,
        target="lb",
        approvals_needed=1,
        expires_at=None,
    )


def plans(path: Path) -> dict[str, list[str]]:
    """Every statement the store runs for the lookups, with SQLite's plan for each."""
    store = Store(path)
    for n in range(50):
        store.create_run(_run(f"app{n % 5}", RunState.SUCCEEDED), NOW)
    store.create_run(_run("app0", RunState.AWAITING_APPROVAL), NOW)
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    with store.database.reading() as reader:  # the idle reader the next reads take again
        reader.set_trace_callback(seen.append)
    lookups = {
        "active_run": lambda: store.active_run("app0", "production"),
        "create_run refused": lambda: store.create_run(_run("app0", RunState.PLANNED), NOW),
        "wanted_keys": lambda: store.wanted_keys(["byoi-x-1-1", "byoi-x-2-1"]),
    }
    found: dict[str, list[str]] = {}
    for name, lookup in lookups.items():
        seen.clear()
        with contextlib.suppress(ActiveRunExists):
            lookup()
        statements = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
        for sql in statements[:1]:  # the lookup itself; the rest hydrate the found run
            rows = store.db.conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            found[name] = [str(r[3]) for r in rows]
    store.close()
    return found


@pytest.mark.parametrize("seed", ["0", "1", "2"])
def test_active_run_lookups_use_the_partial_index_whatever_the_hash_seed(
    tmp_path: Path, seed: str
) -> None:
    probe = subprocess.run(
        [sys.executable, "-m", "tests.unit.test_query_plans", str(tmp_path / "s.db")],
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": seed},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(probe.stdout)

    assert set(found) == {"active_run", "create_run refused", "wanted_keys"}
    for name in ("active_run", "create_run refused"):
        assert any("INDEX runs_one_active" in step for step in found[name]), (name, found[name])
    keys = found["wanted_keys"]
    assert "SEARCH s USING INDEX sqlite_autoindex_servers_1 (key=?)" in keys, keys
    assert "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)" in keys, keys
    assert not any(s.startswith(("SCAN s", "SCAN r")) for s in keys), keys


def test_the_active_states_in_the_lookups_are_the_index_s_own(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    (index_sql,) = store.db.conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'runs_one_active'"
    ).fetchone()
    store.close()

    assert set(ACTIVE_ORDER) == ACTIVE_STATES
    assert index_sql.endswith(f"WHERE {ACTIVE_SQL}")


if __name__ == "__main__":
    print(json.dumps(plans(Path(sys.argv[1]))))
