"""Approval rules (DESIGN.md §6): who may approve, how many, self-approval, expiry, races."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.domain.models import RunState
from pipeline.errors import Busy, Refused
from pipeline.services.caller import Caller
from pipeline.services.replies import RunReply
from tests.conftest import World, config_text, make_world


def request(world: World, text: str = "scale web 2") -> int:
    reply = world.say(text)
    assert isinstance(reply, RunReply) and reply.run is not None, reply
    assert reply.run.state == RunState.AWAITING_APPROVAL
    return reply.run.id


def test_the_requester_cannot_approve_their_own_run(world: World) -> None:
    run_id = request(world)

    reply = world.say(f"approve {run_id}", "UALICE", expect=Refused)

    assert isinstance(reply, Refused)
    assert reply.message == "You requested this run; someone else has to approve it."
    assert world.stored(run_id).state == RunState.AWAITING_APPROVAL
    refused = [e for e in world.store.audit_events(run_id) if e.event == "approval_refused"]
    assert refused[0].actor == "UALICE"


def test_self_approval_can_be_allowed(tmp_path: Path) -> None:
    world = make_world(tmp_path, config_text(self_approval="true"))
    run_id = request(world)

    world.say(f"approve {run_id}", "UALICE")

    assert world.finish(run_id).state == RunState.SUCCEEDED


def test_a_non_approver_is_refused_and_audited(world: World) -> None:
    run_id = request(world)

    reply = world.say(f"approve {run_id}", "UMALLORY", expect=Refused)

    assert isinstance(reply, Refused)
    assert "not an approver" in reply.message
    assert world.stored(run_id).state == RunState.AWAITING_APPROVAL
    assert [e.actor for e in world.store.audit_events(run_id) if "refused" in e.event] == [
        "UMALLORY"
    ]


def test_approvers_named_directly_or_through_groups(world: World) -> None:
    by_id = request(world)
    world.say(f"approve {by_id}", "UCAROL")  # listed by id
    assert world.finish(by_id).state == RunState.SUCCEEDED

    by_group = request(world, "scale web 3")
    world.say(f"approve {by_group}", "UBOB")  # member of @ops
    assert world.finish(by_group).state == RunState.SUCCEEDED


def test_slack_user_groups_count_as_membership(tmp_path: Path) -> None:
    world = make_world(tmp_path, config_text(approvers='["S0PLATFORM"]'))
    run_id = request(world)

    with pytest.raises(Refused) as outsider:
        world.service.handle(f"approve {run_id}", Caller("UDAVE"), world.clock())
    member = world.service.handle(
        f"approve {run_id}", Caller("UDAVE", frozenset({"S0PLATFORM"})), world.clock()
    )

    assert "not an approver" in outsider.value.message
    assert isinstance(member, RunReply)
    assert world.finish(run_id).state == RunState.SUCCEEDED


def test_two_approvals_needed_means_two_different_people(tmp_path: Path) -> None:
    world = make_world(tmp_path, config_text(approvals="2"))
    run_id = request(world)

    first = world.say(f"approve {run_id}", "UBOB")
    again = world.say(f"approve {run_id}", "UBOB", expect=Refused)
    assert world.stored(run_id).state == RunState.AWAITING_APPROVAL
    second = world.say(f"approve {run_id}", "UCAROL")

    assert isinstance(first, RunReply) and "1 more needed" in first.message
    assert isinstance(again, Refused) and "already approved" in again.message
    assert isinstance(second, RunReply) and "starting" in second.message
    assert world.finish(run_id).approvers == ("UBOB", "UCAROL")


def test_an_approval_after_expiry_expires_the_run(world: World) -> None:
    run_id = request(world)
    world.clock.advance(minutes=31)

    reply = world.say(f"approve {run_id}", "UBOB")

    assert isinstance(reply, RunReply)
    assert "expired" in reply.message
    assert world.stored(run_id).state == RunState.EXPIRED
    assert world.provider.list_servers({}) == []


def test_expire_due_sweeps_pending_runs(world: World) -> None:
    run_id = request(world)
    world.clock.advance(minutes=29)
    assert world.service.expire_due(world.clock()) == []
    world.clock.advance(minutes=2)

    expired = world.service.expire_due(world.clock())

    assert [r.id for r in expired] == [run_id]
    assert expired[0].state == RunState.EXPIRED
    # the (app, env) is free again
    assert isinstance(world.say("scale web 1"), RunReply)


def test_reject_stops_the_run_and_only_approvers_may_reject(world: World) -> None:
    run_id = request(world)

    refused = world.say(f"reject {run_id}", "UMALLORY", expect=Refused)
    rejected = world.say(f"reject {run_id}", "UBOB")
    late = world.say(f"approve {run_id}", "UCAROL")

    assert isinstance(refused, Refused)
    assert isinstance(rejected, RunReply) and rejected.run is not None
    assert rejected.run.state == RunState.REJECTED
    assert isinstance(late, RunReply) and late.message == f"Run {run_id} was already rejected."


def test_a_double_approve_from_two_approvers_at_once_starts_one_run(world: World) -> None:
    run_id = request(world)
    barrier = threading.Barrier(2)
    replies: list[object] = []

    def click(user: str) -> None:
        barrier.wait()
        replies.append(world.say(f"approve {run_id}", user))

    threads = [threading.Thread(target=click, args=(u,)) for u in ("UBOB", "UCAROL")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run = world.finish(run_id)

    started = [r for r in replies if isinstance(r, RunReply) and "starting" in r.message]
    assert len(started) == 1
    assert run.state == RunState.SUCCEEDED
    assert len(world.provider.list_servers({})) == 2
    assert [e.event for e in world.store.audit_events(run_id)].count("running") == 1


RACER = """
import json, sys, time
from datetime import datetime
from pathlib import Path
from pipeline.state.store import Store

path, run_id, user, go, now = sys.argv[1:]
store = Store(path)
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.0005)
result = store.approve(int(run_id), user, datetime.fromisoformat(now))
print(json.dumps({"user": user, "recorded": result.recorded, "started": result.started}))
"""


def test_approval_is_atomic_across_two_processes_sharing_the_database(world: World) -> None:
    run_id = request(world)
    go = world.root / "go"
    now = world.clock().isoformat()
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, world.store.path, str(run_id), user, str(go), now],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        for user in ("UBOB", "UCAROL")
    ]
    for racer in racers:
        assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"

    go.touch()  # both processes click at once
    answers = [json.loads(r.communicate(timeout=30)[0]) for r in racers]

    assert sorted(a["started"] for a in answers) == [False, True]
    winner = next(a for a in answers if a["started"])
    loser = next(a for a in answers if not a["started"])
    assert winner["recorded"] is True and loser["recorded"] is False
    run = world.store.run(run_id)
    assert run is not None and run.state == RunState.APPROVED
    assert run.approvers == (winner["user"],)
    world.runner.start(run_id)
    assert world.finish(run_id).state == RunState.SUCCEEDED


def test_states_are_said_in_plain_words(world: World) -> None:
    run_id = request(world)
    busy = world.say("scale web 4", expect=Busy)
    world.say(f"approve {run_id}", "UBOB")
    world.finish(run_id)
    late = world.say(f"approve {run_id}", "UCAROL")

    assert isinstance(busy, Busy)
    assert f"already has run {run_id} (awaiting approval, requested by UALICE" in busy.message
    assert "awaiting_approval" not in busy.message
    assert isinstance(late, RunReply)
    assert late.message == f"Run {run_id} has already succeeded (approved by UBOB)."


def test_a_request_nobody_else_could_approve_is_refused_before_it_holds_the_env(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, config_text(operators='["UALICE", "UBOB"]', approvers='["UBOB"]'))

    reply = world.say("scale web 2", "UBOB", expect=Refused)

    assert isinstance(reply, Refused)
    assert reply.message == (
        "Nobody could approve this run: web/staging needs 1 approval(s) from approvers other "
        "than you (nobody else). Ask another approver to request it, or name more approvers "
        "(or set self_approval) in byoi.yml."
    )
    assert world.store.runs() == []
    run_id = request(world)  # UALICE may: UBOB can approve hers
    world.say(f"approve {run_id}", "UBOB")
    assert world.finish(run_id).state == RunState.SUCCEEDED
