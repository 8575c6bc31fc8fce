"""The SQLite store: migrations, WAL, one active run per app/env across connections."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.domain.models import RunState
from pipeline.domain.ownership import installation_of
from pipeline.services.replies import RunReply
from pipeline.state import measured
from pipeline.state.store import ActiveRunExists, Store
from tests.conftest import World, make_world


def test_migrations_apply_once_and_the_install_id_is_stable(tmp_path: Path) -> None:
    first = Store(tmp_path / "s.db")
    install_id = first.install_id
    first.close()
    again = Store(tmp_path / "s.db")

    names = [r["name"] for r in again.db.query("SELECT name FROM migrations ORDER BY name")]
    mode = next(again.db.query("PRAGMA journal_mode"))["journal_mode"]
    assert names == [
        "001_runs",
        "002_alerts",
        "003_replies",
        "004_adopted",
        "005_cards",
        "006_thread_replies",
        "007_lifecycle",
        "008_reply_intents",
    ]
    assert again.install_id == install_id and len(install_id) == 6
    assert mode == "wal"
    again.close()


def test_a_second_active_run_is_refused_even_from_another_connection(world: World) -> None:
    reply = world.say("scale web 2")
    assert isinstance(reply, RunReply) and reply.run is not None
    other = Store(world.store.path)

    with pytest.raises(ActiveRunExists) as caught:
        other.create_run(replace(reply.run, id=0, servers=()), world.clock())
    other.close()

    assert caught.value.run.id == reply.run.id


def test_transition_moves_only_from_the_allowed_states(world: World) -> None:
    run = world.request("scale web 1")

    moved = world.store.transition(
        run.id, [RunState.RUNNING], RunState.FAILED, world.clock(), actor="x"
    )
    rejected = world.store.transition(
        run.id,
        [RunState.AWAITING_APPROVAL],
        RunState.REJECTED,
        world.clock(),
        actor="UBOB",
        reason="not today",
    )

    assert (moved, rejected) == (False, True)
    stored = world.store.run(run.id)
    assert stored is not None and stored.state == RunState.REJECTED
    assert stored.reason == "not today"
    assert [(e.event, e.actor) for e in world.store.audit_events(run.id)] == [
        ("requested", "UALICE"),
        ("rejected", "UBOB"),
    ]


def test_idempotency_keys_are_unique_per_database_run_and_slot(
    world: World, tmp_path: Path
) -> None:
    other = make_world(tmp_path / "other")  # a second database: its run ids start at 1 too
    runs = [
        world.request("scale web 3"),
        world.request("scale web 2 --env production"),
        other.request("scale web 3"),
    ]
    other.store.close()

    keys = [s.key for run in runs for s in run.servers]

    assert len(set(keys)) == len(keys) == 8
    assert runs[0].id == runs[2].id  # same run and slots, different databases, different keys
    # Each key names the installation that made it: what the reconciler and every view use.
    assert {installation_of(k) for k in keys[:5]} == {world.store.install_id}
    assert {installation_of(k) for k in keys[5:]} == {other.store.install_id}


def test_a_run_is_stored_with_its_options_in_the_one_transaction_that_creates_it(
    world: World,
) -> None:
    commits = world.store.database.commits

    run = world.request("refresh web --force")

    assert world.store.database.commits == commits + 1
    assert measured.options_of(world.store, run.id).force


def test_a_failure_storing_a_runs_options_leaves_no_run_behind(world: World) -> None:
    world.store.db.execute(
        "CREATE TEMP TRIGGER refuse_options BEFORE INSERT ON run_options "
        "BEGIN SELECT RAISE(ABORT, 'injected between the run and its options'); END"
    )

    with pytest.raises(sqlite3.IntegrityError, match="injected"):
        world.say("refresh web --force")

    assert world.store.runs() == []
    assert world.store.db.execute("SELECT count(*) FROM servers").fetchone() == (0,)
    assert world.store.audit_events() == []


def test_a_notifier_that_reads_no_servers_is_told_with_the_run_alone(world: World) -> None:
    from pipeline.execution.notices import RunNotices
    from tests.conftest import Recorder

    class Queueing(Recorder):
        needs_servers = False

    run = world.request("scale web 3")
    full, alone = Recorder(), Queueing()
    for notifier in (full, alone):
        RunNotices(world.store, notifier, 0.0).changed(run.id)

    (told_full,) = full.runs
    (told_alone,) = alone.runs
    assert len(told_full.servers) == 3
    assert told_alone.servers == ()
    assert replace(told_full, servers=()) == told_alone


def test_a_new_run_is_returned_as_the_store_reads_it_back(world: World) -> None:
    world.scale_and_approve("scale web 3")
    down = world.request("scale web 1")  # its slots name the servers they remove

    assert down == world.stored(down.id)
    assert all(s.provider_id for s in down.servers) and len(down.servers) == 2
    up = world.store.create_run(replace(down, id=0, state=RunState.FAILED), world.clock())
    assert up == world.stored(up.id) and up.id != down.id


def test_who_cancelled_is_the_first_to_ask_not_byoi_finishing_the_cancel(world: World) -> None:
    ran = world.request("scale web 1")
    world.store.transition(
        ran.id, [RunState.AWAITING_APPROVAL], RunState.RUNNING, world.clock(), actor="byoi"
    )
    world.store.request_cancel(ran.id, world.clock(), "UCAROL")
    world.store.request_cancel(ran.id, world.clock(), "UBOB")  # a second ask
    world.store.transition(
        ran.id, [RunState.RUNNING], RunState.CANCELLED, world.clock(), actor="byoi"
    )
    finished = world.store.transition(  # a run that ended on its own
        world.request("scale web 1 --env production").id,
        [RunState.AWAITING_APPROVAL],
        RunState.CANCELLED,
        world.clock(),
        actor="byoi",
    )

    assert finished
    assert world.store.cancellers([ran.id, ran.id + 1]) == {ran.id: "UCAROL"}
