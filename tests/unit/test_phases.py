"""A run's step story: phases derived from the stored history, and the line both front ends show."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from bot.slack.blocks import messages
from bot.views.words import duration, part_line, phase_line
from pipeline.domain import roll
from pipeline.domain.measured import RunOptions
from pipeline.domain.models import Run, RunState, ServerStatus, Step
from pipeline.domain.phases import StepEvent, StepEventKind, StepLog, phases, story
from pipeline.services.display import Display
from pipeline.state.steps import SlotChange
from tests.conftest import IMAGE_FILES, START, World, config_text, make_world
from tests.unit.test_runs import FAIL_ON_SLOT_2

# A roll's slot 3 is the new server of its second pair.
FAIL_ON_SLOT_3 = FAIL_ON_SLOT_2.replace("*-2)", "*-3)")
# Slot 7, the new server of its fourth pair: batch 2 of a roll in batches of 2.
FAIL_ON_SLOT_7 = FAIL_ON_SLOT_2.replace("*-2)", "*-7)")

STARTED, DONE, NOTE, STOPPED = (
    StepEventKind.STARTED,
    StepEventKind.DONE,
    StepEventKind.NOTE,
    StepEventKind.STOPPED,
)


def event(
    slot: int, kind: StepEventKind, step: Step | None, second: float, note: str = ""
) -> StepEvent:
    return StepEvent(slot, kind, step, START + timedelta(seconds=second), note)


def three_servers(world: World) -> Run:
    """A stored three-server run, rewritten below to any moment of its life."""
    return world.scale_and_approve("scale web 3")


def test_a_phase_counts_servers_in_and_through_its_step_and_times_first_in_to_last_out(
    world: World,
) -> None:
    run = replace(three_servers(world), state=RunState.RUNNING)
    run = replace(
        run,
        servers=tuple(
            replace(s, status=ServerStatus.WORKING, step=Step.SCRUB) for s in run.servers
        ),
    )
    history = [
        *(event(slot, STARTED, Step.CLONE, slot) for slot in (1, 2, 3)),
        *(event(slot, DONE, Step.CLONE, 10 + slot) for slot in (1, 2, 3)),
        event(1, STARTED, Step.SCRUB, 11),
        event(1, NOTE, Step.SCRUB, 12, "scrubbed 7: /etc/machine-id, …"),
        event(1, DONE, Step.SCRUB, 14),
        event(2, STARTED, Step.SCRUB, 12),
    ]

    clone, scrub = phases(run, history)

    assert (clone.done, clone.servers, clone.seconds) == (3, 3, 12.0)
    assert (scrub.done, scrub.working, scrub.servers, scrub.finished) == (1, 1, 3, False)
    assert phase_line(clone) == "clone · 3/3 done · 12 s"
    assert phase_line(scrub) == "scrub · 1/3 done · 1 in progress · removed 7 paths"


def test_a_failed_server_ends_its_phase_and_leaves_the_later_ones(world: World) -> None:
    run = three_servers(world)
    servers = list(run.servers)
    servers[1] = replace(servers[1], status=ServerStatus.FAILED, step=Step.DEPLOY)
    run = replace(run, state=RunState.PARTIALLY_FAILED, servers=tuple(servers))
    history = [
        *(event(s, STARTED, Step.DEPLOY, 20 + s) for s in (1, 2, 3)),
        event(1, DONE, Step.DEPLOY, 25),
        event(2, STOPPED, None, 29),
        event(3, DONE, Step.DEPLOY, 27),
        *(event(s, STARTED, Step.REGISTER, 30 + s) for s in (1, 3)),
        *(event(s, DONE, Step.REGISTER, 40 + s) for s in (1, 3)),
    ]

    deploy, register = phases(run, history)

    assert phase_line(deploy) == "deploy · 2/3 done · 1 failed · 8 s"
    assert phase_line(register) == "register · 2/2 done · 12 s"


def test_phases_of_a_real_run_come_from_its_stored_history(tmp_path: Path) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_2))
    run = world.scale_and_approve("scale web 3")

    lines = [phase_line(p) for p in Display(world.store).phases(run)]

    assert lines == [
        "clone · 3/3 done · 0 s",
        "scrub · 3/3 done · 0 s · removed 7 paths on each",
        "deploy · 2/3 done · 1 failed · 0 s",
        "probe · 2/2 done · 0 s",
        "register · 2/2 done · 0 s",
    ]


def test_a_run_that_failed_altogether_still_has_its_phases(tmp_path: Path) -> None:
    # The run's own `failed` audit event carries its reason, not a server's slot.
    world = make_world(tmp_path, config_text(deploy_command=repr("exit 3")))
    run = world.scale_and_approve("scale web 1")

    lines = [phase_line(p) for p in Display(world.store).phases(run)]

    assert run.state == RunState.FAILED
    assert lines[-1] == "deploy · 0/1 done · 1 failed · 0 s"


def test_a_run_that_has_not_started_has_no_phases(world: World) -> None:
    reply = world.say("scale web 2")
    run = reply.run  # type: ignore[attr-defined]

    assert Display(world.store).phases(run) == ()


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (0.4, 12, 60, 185, 3600, 3725)] == [
        "0 s",
        "12 s",
        "1 min",
        "3 min 5 s",
        "1 h",
        "1 h 2 min",
    ]


# a roll's thread: one batch at a time -----------------------------------------------------


def behind(world: World, servers: int) -> None:
    """``servers`` servers on the old image, then a newer image in the family."""
    world.scale_and_approve(f"scale web {servers}")
    world.provider.create_image("web-new", IMAGE_FILES, family="web", created_at=START)


def test_a_roll_tells_its_story_batch_by_batch(world: World) -> None:
    behind(world, 3)

    run = world.scale_and_approve("roll web --batch 1")
    parts = Display(world.store).phases(run)

    assert run.state == RunState.SUCCEEDED
    assert [part_line(p) for p in parts] == [
        f"batch {n}/3 · 1/1 new up · 1/1 old removed · 0 s" for n in (1, 2, 3)
    ]
    assert [p.key for p in parts] == ["batch:1", "batch:2", "batch:3"]
    assert not any(p.troubled or p.paused for p in parts)


def test_a_roll_paused_after_its_canary_says_it_waits_for_continue_or_roll_back(
    world: World,
) -> None:
    behind(world, 3)
    run_id = world.request("roll web --canary --batch 2").id
    world.say(f"approve {run_id}", "UBOB")
    world.runner.wait(30)

    (canary,) = Display(world.store).phases(world.stored(run_id))

    assert canary.paused and not canary.finished
    assert part_line(canary) == (
        "batch 1/2 · canary · 1/1 new up · 0/1 old removed · "
        "paused: waiting for Continue or Roll back"
    )
    world.say(f"continue {run_id}", "UBOB")
    run = world.finish(run_id)
    assert [part_line(p) for p in Display(world.store).phases(run)] == [
        "batch 1/2 · canary · 1/1 new up · 1/1 old removed · 0 s",
        "batch 2/2 · 2/2 new up · 2/2 old removed · 0 s",
    ]


def test_a_failed_batch_says_what_it_rolled_back_and_kept_and_later_batches_never_start(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_3))
    behind(world, 6)

    run = world.scale_and_approve("roll web --batch 2")
    parts = Display(world.store).phases(run)

    assert run.state == RunState.FAILED  # nothing finished: batch 1's new server was rolled back
    assert [part_line(p) for p in parts] == [
        "batch 1/3 · 0/2 new up · 1 failed · 1 rolled back · 0/2 old removed · "
        "2 old kept in service · 0 s"
    ]
    assert parts[0].troubled and parts[0].finished


def test_a_roll_that_stopped_in_a_later_batch_counts_servers_replaced_not_slots(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_7))
    behind(world, 6)

    run = world.scale_and_approve("roll web --batch 2")

    assert run.state == RunState.PARTIALLY_FAILED
    assert run.reason == (
        "2 of 6 server(s) replaced, 1 failed, 1 rolled back with their batch, 2 not started"
    )
    assert messages.run_summary(run).endswith(f"roll web/staging, {run.reason}.")
    # The card's progress names the batch it stopped in, not the last one, never begun.
    assert roll.progress(run, 2, canary=False) == "batch 2 of 3 · old 4 → new 2 (of 6)"


def test_a_batch_in_progress_says_where_its_servers_are(world: World) -> None:
    behind(world, 4)
    done = world.scale_and_approve("roll web --batch 2")
    # Rewind it: batch 2's new servers are in deploy and register, its old ones waiting.
    rewound = {
        5: (ServerStatus.WORKING, Step.DEPLOY),
        7: (ServerStatus.WORKING, Step.REGISTER),
        6: (ServerStatus.PENDING, None),
        8: (ServerStatus.PENDING, None),
    }
    servers = tuple(
        replace(s, status=rewound[s.slot][0], step=rewound[s.slot][1]) if s.slot in rewound else s
        for s in done.servers
    )
    run = replace(done, state=RunState.RUNNING, servers=servers)
    events = [e for e in world.store.history.step_events(run.id) if e.slot not in rewound]
    events += [event(5, STARTED, Step.CLONE, 1), event(7, STARTED, Step.CLONE, 1)]

    first, second = story(run, events, RunOptions(run.id, batch_size=2))

    assert first.finished and not second.finished
    assert (
        part_line(second) == "batch 2/2 · 0/2 new up · 0/2 old removed · 1 in deploy, 1 in register"
    )


# the store folds the step events in SQL: the same as folding them one by one ----------------


def folded_both_ways(world: World, run_id: int) -> StepLog:
    history = world.store.history
    log = history.step_log(run_id, slots=True)
    assert log == StepLog.of(history.step_events(run_id))
    assert history.step_log(run_id) == replace(log, slots=None)
    return log


def test_the_stored_fold_matches_the_events_for_a_scale_up_a_failure_a_roll_and_a_scale_down(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_2))
    up = world.scale_and_approve("scale web 3")
    log = folded_both_ways(world, up.id)
    assert up.state == RunState.PARTIALLY_FAILED and 2 in log.stopped_at
    assert log.started[Step.DEPLOY].slots == {1, 2, 3} and 2 not in log.done[Step.DEPLOY].slots
    world.provider.create_image("web-new", IMAGE_FILES, family="web", created_at=START)
    rolled = world.scale_and_approve("roll web --batch 1")
    assert folded_both_ways(world, rolled.id).slots
    down = world.scale_and_approve("scale web 1")
    assert folded_both_ways(world, down.id).started


def test_the_stored_fold_orders_times_with_and_without_fractions_of_a_second(world: World) -> None:
    run = three_servers(world)
    ats = {1: "00:00:00.500000", 2: "00:00:00", 3: "00:00:01"}  # isoformat drops a zero fraction
    with world.store.database.write() as conn:
        for slot, at in ats.items():
            conn.execute(
                "INSERT INTO audit (at, run_id, actor, event, detail) VALUES (?,?,?,?,?)",
                [
                    f"2030-01-01T{at}+00:00",
                    run.id,
                    "byoi",
                    "snapshot_started",
                    f'{{"slot": {slot}}}',
                ],
            )

    span = folded_both_ways(world, run.id).started[Step.SNAPSHOT]

    assert span.first == START.replace(year=2030, month=1, day=1, hour=0, minute=0, second=0)
    assert (span.last - span.first).total_seconds() == 1


def test_an_event_servers_reached_together_is_one_row_read_as_each_servers(
    tmp_path: Path,
) -> None:
    together = make_world(tmp_path / "together")
    apart = make_world(tmp_path / "apart")
    at = START.isoformat()
    logs = []
    for world, shared in ((together, True), (apart, False)):
        run = world.request("scale web 3")
        started = {"status": ServerStatus.WORKING, "step": Step.DEPLOY}
        changes = [
            SlotChange(
                run.id,
                slot,
                at,
                (
                    ("scrub_output", {"note": f"scrubbed {slot}"}),
                    ("deploy_started", started if shared else dict(started)),
                ),
            )
            for slot in (1, 2, 3)
        ]
        world.store.record_servers(changes)
        (row,) = [e for e in world.store.audit_events(run.id) if e.event == "deploy_started"]
        # The same fields: one value for all, whether one mapping or equal ones.
        assert json.loads(row.detail) == {"slots": [1, 2, 3], "status": "working", "step": "deploy"}
        logs.append(folded_both_ways(world, run.id))

    assert logs[0] == logs[1]
    assert logs[0].started[Step.DEPLOY].slots == {1, 2, 3}
    assert logs[0].notes[Step.SCRUB] == ((1, "scrubbed 1"), (2, "scrubbed 2"), (3, "scrubbed 3"))


def test_each_servers_events_keep_their_order_among_shared_rows(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    run = world.request("scale web 3")
    ended = ("clone_done", {"step": Step.CLONE})
    started = ("scrub_started", {"status": ServerStatus.WORKING, "step": Step.SCRUB})
    world.store.record_servers(
        [
            SlotChange(
                run.id, slot, START.isoformat(), (("launched", {"provider_id": f"s{slot}"}), ended)
            )
            for slot in (1, 2, 3)
        ]
        + [SlotChange(run.id, 4, START.isoformat(), (started,))]  # one that has nothing before
    )

    rows = [
        (e.event, json.loads(e.detail))
        for e in world.store.audit_events(run.id)
        if e.actor == "byoi"
    ]
    events = [event for event, _ in rows]
    assert sorted(events) == ["clone_done", "launched", "scrub_started"]
    assert events.index("clone_done") > events.index("launched")  # each slot's order holds
    assert rows[events.index("clone_done")][1] == {"slots": [1, 2, 3], "step": "clone"}
    assert rows[events.index("launched")][1] == {  # each slot's own value, in their order
        "slots": [1, 2, 3],
        "provider_id": ["s1", "s2", "s3"],
    }
    run_now = world.store.run(run.id)
    assert run_now is not None
    assert [s.provider_id for s in run_now.servers] == ["s1", "s2", "s3"]


def test_a_row_of_many_slots_lists_only_the_fields_that_differ(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    run = world.request("scale web 3")
    at = START.isoformat()
    world.store.record_servers(
        [
            SlotChange(run.id, n, at, (("failed", {"status": "failed", "reason": f"r{n}"}),))
            for n in (2, 3)
        ]
    )

    (row,) = [e for e in world.store.audit_events(run.id) if e.event == "failed"]
    assert json.loads(row.detail) == {"slots": [2, 3], "status": "failed", "reason": ["r2", "r3"]}
    assert folded_both_ways(world, run.id).stopped_at.keys() == {2, 3}


def test_a_slot_changed_twice_in_one_write_keeps_its_order(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    run = world.request("scale web 2")
    at = START.isoformat()
    world.store.record_servers(
        [
            SlotChange(run.id, 1, at, (("scrub_started", {"step": Step.SCRUB}),)),
            SlotChange(run.id, 2, at, (("scrub_started", {"step": Step.SCRUB}),)),
            SlotChange(run.id, 1, at, (("deploy_started", {"step": Step.DEPLOY}),)),
        ]
    )

    stored = world.store.run(run.id)
    assert stored is not None
    assert [s.step for s in stored.servers] == [Step.DEPLOY, Step.SCRUB]
    events = [e.event for e in world.store.audit_events(run.id) if e.actor == "byoi"]
    assert events == ["scrub_started", "deploy_started"]
