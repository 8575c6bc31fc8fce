"""Many servers' step records share transactions, and each writer still waits for its own."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.domain.models import RunServer, RunState, ServerStatus, Step
from pipeline.execution.fanout import fan_out
from pipeline.state import measured
from pipeline.state.groupcommit import GroupCommit
from pipeline.state.steps import SlotChange
from pipeline.state.store import Store
from tests.unit.test_query_plans import _run

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _store_with_run(path: Path, slots: int) -> tuple[Store, int]:
    store = Store(path)
    servers = tuple(
        RunServer(0, n, "", ServerStatus.PENDING, None, None, False, None, None, None, NOW)
        for n in range(1, slots + 1)
    )
    stored = store.create_run(replace(_run("web", RunState.RUNNING), servers=servers), NOW)
    return store, stored.id


def test_concurrent_step_records_share_transactions_and_are_committed_on_return(
    tmp_path: Path,
) -> None:
    store, run_id = _store_with_run(tmp_path / "s.db", 200)
    other = sqlite3.connect(tmp_path / "s.db", check_same_thread=False)
    reading = threading.Lock()
    seen_on_return: list[str] = []

    def record(slot: int) -> None:
        store.record_server(run_id, slot, NOW, [("clone_started", {"step": "clone"})])
        with reading:  # another connection: what is committed, nothing else
            (step,) = other.execute(
                "SELECT step FROM servers WHERE run_id = ? AND slot = ?", [run_id, slot]
            ).fetchone()
        seen_on_return.append(step)

    fan_out(record, list(range(1, 201)), 200, "t")

    assert seen_on_return == ["clone"] * 200
    started = [e.slot for e in store.history.step_events(run_id) if e.step == Step.CLONE]
    assert sorted(started) == list(range(1, 201))  # every server's start, in shared rows or not
    store.close()


def test_the_cancel_check_is_part_of_the_write(tmp_path: Path) -> None:
    store, run_id = _store_with_run(tmp_path / "s.db", 2)
    done = ("clone_done", {"step": "clone"})
    started = ("scrub_started", {"status": ServerStatus.WORKING, "step": "scrub"})

    assert store.record_server(run_id, 1, NOW, [done], [started]) is False
    store.request_cancel(run_id, NOW, "UALICE")
    assert store.record_server(run_id, 2, NOW, [done], [started]) is True

    run = store.run(run_id)
    assert run is not None
    assert [(s.status, s.step) for s in run.servers] == [
        (ServerStatus.WORKING, "scrub"),
        (ServerStatus.PENDING, "clone"),
    ]
    events = [e.event for e in store.audit_events(run_id)]
    assert events.count("scrub_started") == 1 and events.count("clone_done") == 2
    store.close()


def test_a_probes_measurement_is_stored_with_the_probes_end(tmp_path: Path) -> None:
    store, run_id = _store_with_run(tmp_path / "s.db", 1)
    found = ("i-1", "web", "production", "ami-1", {"ruby_version": "3.2.2"}, NOW, run_id)
    done = ("probe_done", {"step": "probe"})
    started = ("register_started", {"step": "register"})
    assert measured.of_servers(store, "web", "production") == {}

    store.record_server(run_id, 1, NOW, [done], [started], [found])

    stored = measured.of_servers(store, "web", "production")["i-1"]
    assert (stored.image_id, stored.versions) == ("ami-1", {"ruby_version": "3.2.2"})
    changes = store.database.db.conn.execute(
        "SELECT count(*) FROM audit WHERE run_id = ? AND event = 'probe_done'", [run_id]
    ).fetchone()
    assert changes == (1,)
    store.close()


def test_writers_queued_behind_a_commit_share_the_next_transaction() -> None:
    batches: list[list[int]] = []
    lock = threading.RLock()

    def commit(changes: Sequence[int]) -> list[int]:
        batches.append(list(changes))
        return list(changes)

    group: GroupCommit[int, int] = GroupCommit(lock, commit)
    results: list[int] = []
    with lock:  # a transaction in progress
        writers = threading.Thread(
            target=fan_out, args=(lambda n: results.append(group.write(n)), [1, 2, 3, 4, 5], 5, "t")
        )
        writers.start()
        deadline = time.monotonic() + 10
        while len(group._queue) < 5 and time.monotonic() < deadline:
            time.sleep(0.001)
    writers.join(10)

    assert [sorted(b) for b in batches] == [[1, 2, 3, 4, 5]]
    assert sorted(results) == [1, 2, 3, 4, 5]


def test_a_bad_change_fails_only_its_own_writer() -> None:
    committed: list[list[int]] = []

    def commit(changes: Sequence[int]) -> list[int]:
        if -1 in changes:
            raise ValueError("bad change")
        time.sleep(0.01)  # long enough for the others to queue behind it
        committed.append(list(changes))
        return [c * 10 for c in changes]

    group: GroupCommit[int, int] = GroupCommit(threading.RLock(), commit)
    results: dict[int, object] = {}

    def write(change: int) -> None:
        try:
            results[change] = group.write(change)
        except ValueError as exc:
            results[change] = str(exc)

    fan_out(write, [1, 2, -1, 3, 4, 5], 6, "t")

    assert results == {1: 10, 2: 20, -1: "bad change", 3: 30, 4: 40, 5: 50}
    assert sorted(c for batch in committed for c in batch) == [1, 2, 3, 4, 5]


def test_fan_out_works_every_item_at_most_limit_at_once_then_raises_the_first_error() -> None:
    running, peak, seen = 0, 0, []
    lock = threading.Lock()

    def work(item: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.005)
        with lock:
            running -= 1
            seen.append(item)
        if item == 7:
            raise RuntimeError("item 7")

    with pytest.raises(RuntimeError, match="item 7"):
        fan_out(work, list(range(40)), 8, "t")

    assert sorted(seen) == list(range(40))
    assert peak <= 8


def test_a_write_of_a_thousand_slots_gives_each_its_own_fields(
    tmp_path: Path,
) -> None:
    store, run_id = _store_with_run(tmp_path / "s.db", 1200)
    at = NOW.isoformat()
    started = ("deploy_started", {"status": ServerStatus.WORKING, "step": "deploy"})
    store.record_servers(
        [
            SlotChange(run_id, slot, at, (("launched", {"provider_id": f"i-{slot}"}), started))
            for slot in range(1, 1201)
        ]
    )

    run = store.run(run_id)
    assert run is not None
    assert [s.provider_id for s in run.servers] == [f"i-{n}" for n in range(1, 1201)]
    assert {(s.status, s.step) for s in run.servers} == {(ServerStatus.WORKING, Step.DEPLOY)}
    store.close()
