"""A run's step story: phases derived from the stored history, and the line both front ends show."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from bot.views.words import duration, phase_line
from pipeline.domain.models import Run, RunState, ServerStatus, Step
from pipeline.domain.phases import StepEvent, StepEventKind, phases
from pipeline.services.display import Display
from tests.conftest import START, World, config_text, make_world
from tests.unit.test_runs import FAIL_ON_SLOT_2

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
