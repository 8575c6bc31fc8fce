"""A parallel run's new servers on a provider that takes many per call: they move together.

The local provider implements ``providers.base.Batches``; these tests count its calls and the
store's transactions, stop and cancel a cohort in flight, and resume one whose servers a
restart finds at different steps.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from pipeline.domain.models import Run, RunState, ServerStatus, Step
from pipeline.execution import cohorts
from providers.base import TAG_APP, LaunchRequest, ProviderError, Script, ScriptResult, Server
from providers.base import Target as LoadBalancer
from providers.local import LocalProvider
from tests.conftest import World, config_text, make_world, resumed, world_around


class Counted(LocalProvider):
    """Counts the servers of each call for many; deploys can be held at a gate."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, int]] = []
        self.held = False
        self.entered = threading.Event()
        self.gate = threading.Event()

    def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
        self.calls.append(("launch", len(requests)))
        return super().launch_all(requests)

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        name = jobs[0][1].name
        self.calls.append((name, len(jobs)))
        if self.held and name == "deploy":
            self.entered.set()
            assert self.gate.wait(30)
        return super().run_script_all(jobs)

    def register_all(
        self, servers: Sequence[Server], target: LoadBalancer
    ) -> list[ProviderError | None]:
        self.calls.append(("register", len(servers)))
        return super().register_all(servers, target)


C = TypeVar("C", bound=Counted)


def counted_world(tmp_path: Path, **keys: str) -> World[Counted]:
    return world_on(tmp_path, Counted, **keys)


def world_on(tmp_path: Path, provider: Callable[[Path], C], **keys: str) -> World[C]:
    """A world whose local provider is ``provider`` (a Counted), max_parallel 10 unless said."""
    base = make_world(tmp_path, config_text(**{"max_parallel": "10", **keys}))
    base.store.close()
    return world_around(tmp_path, provider(base.provider.root), base.clock)


def held_at_deploy(world: World[Counted], command: str) -> Run:
    """The run of ``command``, approved, once its deploy is held at the provider's gate."""
    world.provider.held = True
    run = world.request(command)
    world.say(f"approve {run.id}", "UBOB")
    assert world.provider.entered.wait(30)
    return run


def test_each_step_is_one_call_for_every_server(tmp_path: Path) -> None:
    world = counted_world(tmp_path)

    run = world.scale_and_approve("scale web 6")

    assert run.state == RunState.SUCCEEDED
    assert world.provider.calls == [
        ("launch", 6),
        ("scrub", 6),
        ("deploy", 6),
        ("probe", 6),
        ("health", 6),
        ("register", 6),
    ]
    members = world.provider.target_members(LoadBalancer("web-lb"))
    assert sorted(members) == sorted(s.provider_id or "" for s in run.servers)


def test_a_run_commits_as_many_transactions_for_eight_servers_as_for_two(
    tmp_path: Path,
) -> None:
    world = counted_world(tmp_path)
    commits = []
    for count in (2, 8):
        before = world.store.database.commits
        run = world.scale_and_approve(f"scale web {count}")
        assert run.state == RunState.SUCCEEDED
        commits.append(world.store.database.commits - before)
        world.scale_and_approve("scale web 0")  # back to none for the next

    assert commits[0] == commits[1], commits


def test_max_parallel_bounds_a_cohort_and_the_next_starts_when_one_ends(tmp_path: Path) -> None:
    world = counted_world(tmp_path, max_parallel="2")

    run = world.scale_and_approve("scale web 5")

    assert run.state == RunState.SUCCEEDED
    assert [n for step, n in world.provider.calls if step == "launch"] == [2, 2, 1]


class Together(Counted):
    """Launches for many that wait for each other: they pass only if ``parties`` calls are in
    flight at once. Each launch is logged beside the runner's checkpoints."""

    def __init__(self, root: Path, parties: int) -> None:
        super().__init__(root)
        self.log: list[str] = []
        self.barrier = threading.Barrier(parties, timeout=10)

    def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
        self.log.append("launch")
        self.barrier.wait()  # raises if the others never come
        return super().launch_all(requests)


def test_a_run_larger_than_a_cohort_goes_in_cohorts_at_once_that_start_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cohorts, "COHORT", 3)
    world = world_on(tmp_path, lambda root: Together(root, parties=3))

    def checkpoint(point: str) -> None:
        if point.startswith("clone_started:"):
            world.provider.log.append(point)
            time.sleep(0.02)  # a slow start: another cohort would start meanwhile, but for its turn

    world.runner.checkpoint = checkpoint

    run = world.scale_and_approve("scale web 8")

    assert run.state == RunState.SUCCEEDED
    assert sorted(n for step, n in world.provider.calls if step == "launch") == [2, 3, 3]
    # All three launches were in flight at once (the barrier let them through), and each
    # cohort stored its servers' start in its turn: one cohort's starts never among another's.
    cohort = {1: "a", 2: "a", 3: "a", 4: "b", 5: "b", 6: "b", 7: "c", 8: "c"}
    points = [point for point in world.provider.log if point != "launch"]
    started = [cohort[int(point.split(":")[1])] for point in points]
    assert sorted(started) == sorted(cohort.values())
    assert sum(one != after for one, after in itertools.pairwise(started)) == 2, started


def test_the_next_cohort_starts_as_soon_as_one_ends_not_with_its_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Slow(Counted):
        """The first cohort's deploy waits until a third cohort has launched."""

        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.third = threading.Event()
            self.first = threading.Lock()  # taken by the first deploy, which waits

        def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
            if sum(step == "launch" for step, _ in self.calls) == 2:
                self.third.set()
            return super().launch_all(requests)

        def run_script_all(
            self, jobs: Sequence[tuple[Server, Script]]
        ) -> list[ScriptResult | ProviderError]:
            if jobs[0][1].name == "deploy" and self.first.acquire(blocking=False):
                assert self.third.wait(10), "the third cohort waited for the first"
            return super().run_script_all(jobs)

    monkeypatch.setattr(cohorts, "COHORT", 2)
    world = world_on(tmp_path, Slow, max_parallel="4")

    run = world.scale_and_approve("scale web 6")

    assert run.state == RunState.SUCCEEDED
    assert [n for step, n in world.provider.calls if step == "launch"] == [2, 2, 2]
    assert len(world.provider.list_servers({TAG_APP: "web"})) == 6


def test_cohorts_at_once_never_hold_more_servers_than_max_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Flight(Counted):
        """Servers from their launch to their register; the first register waits for a second
        cohort's launch, so that two cohorts are surely in flight together."""

        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.flying = self.most = 0
            self.second = threading.Event()
            self.lock = threading.Lock()

        def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
            with self.lock:
                self.flying += len(requests)
                self.most = max(self.most, self.flying)
                if sum(step == "launch" for step, _ in self.calls) == 1:
                    self.second.set()
            return super().launch_all(requests)

        def register_all(
            self, servers: Sequence[Server], target: LoadBalancer
        ) -> list[ProviderError | None]:
            self.second.wait(10)
            answers = super().register_all(servers, target)
            with self.lock:
                self.flying -= len(servers)
            return answers

    monkeypatch.setattr(cohorts, "COHORT", 2)
    world = world_on(tmp_path, Flight, max_parallel="3")

    run = world.scale_and_approve("scale web 5")

    assert run.state == RunState.SUCCEEDED
    assert world.provider.second.is_set()
    assert world.provider.most <= 3  # two cohorts of 2 would have been 4


def test_a_stopped_runner_stores_the_cohort_step_in_flight_and_resumes_it(
    tmp_path: Path,
) -> None:
    world = counted_world(tmp_path)
    run = held_at_deploy(world, "scale web 3")

    world.runner.stop()
    world.provider.gate.set()
    assert world.runner.wait(30)

    paused = world.stored(run.id)
    assert paused.state == RunState.RUNNING
    # Each server waits after its deploy, which ended and is stored.
    assert {(s.status, s.step) for s in paused.servers} == {(ServerStatus.PENDING, Step.DEPLOY)}
    ended = [e.slot for e in world.store.history.step_events(run.id) if e.step == Step.DEPLOY]
    assert sorted(ended) == [1, 1, 2, 2, 3, 3]  # each server's deploy started and done
    events = [e.event for e in world.store.audit_events(run.id)]
    assert "probe_started" not in events and "paused" in events

    world.provider.held = False
    world.provider.calls.clear()
    assert resumed(world) == [run.id]
    assert world.stored(run.id).state == RunState.SUCCEEDED
    assert len(world.provider.list_servers({TAG_APP: "web"})) == 3
    # The next start goes on after the deploy: found again, probed, not deployed again.
    assert [step for step, _ in world.provider.calls] == ["launch", "probe", "health", "register"]


def test_cohorts_stopped_at_different_steps_resume_each_server_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cohorts, "COHORT", 2)
    world = counted_world(tmp_path)
    run = held_at_deploy(world, "scale web 6")  # three cohorts; one is held at its deploy

    world.runner.stop()  # the others stop wherever their next step boundary finds them
    world.provider.gate.set()
    assert world.runner.wait(30)
    assert world.stored(run.id).state == RunState.RUNNING

    world.provider.held = False
    assert resumed(world) == [run.id]

    done = world.stored(run.id)
    assert done.state == RunState.SUCCEEDED
    live = world.provider.list_servers({TAG_APP: "web"})
    assert sorted(s.id for s in live) == sorted(s.provider_id or "" for s in done.servers)
    assert len(live) == 6
    deployed = [e.slot for e in world.store.history.step_events(run.id) if e.step == Step.DEPLOY]
    assert sorted(deployed) == sorted([1, 2, 3, 4, 5, 6] * 2)  # each deploy started and done once


def test_cancel_during_a_cohort_step_rolls_back_every_server(tmp_path: Path) -> None:
    world = counted_world(tmp_path)
    run_id = held_at_deploy(world, "scale web 3").id

    world.say(f"cancel {run_id}")
    world.provider.gate.set()
    run = world.finish(run_id)

    assert run.state == RunState.CANCELLED
    assert {s.status for s in run.servers} == {ServerStatus.CANCELLED}
    assert all("rolled back (terminated" in (s.cleanup or "") for s in run.servers)
    assert world.provider.list_servers({TAG_APP: "web"}) == []
    assert ("probe", 3) not in world.provider.calls


@pytest.mark.parametrize("failing", ["scrub", "deploy"])
def test_a_call_for_many_that_raises_fails_and_rolls_back_every_server_in_it(
    tmp_path: Path, failing: str
) -> None:
    class Broken(Counted):
        def run_script_all(
            self, jobs: Sequence[tuple[Server, Script]]
        ) -> list[ScriptResult | ProviderError]:
            if jobs[0][1].name == failing:
                raise KeyError("CommandPlugins")  # a bug reading the cloud's answer
            return super().run_script_all(jobs)

    base = make_world(tmp_path)
    base.store.close()
    world = world_around(tmp_path, Broken(base.provider.root), base.clock)

    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.FAILED
    assert {s.step for s in run.servers} == {Step(failing)}
    assert all((s.reason or "").startswith("internal error (reference") for s in run.servers)
    assert len({s.reason for s in run.servers}) == 1  # one trace logged, one reference
    assert world.provider.list_servers({TAG_APP: "web"}) == []


def test_a_restart_that_finds_servers_at_different_steps_takes_each_from_its_own(
    tmp_path: Path,
) -> None:
    world = counted_world(tmp_path)
    run = held_at_deploy(world, "scale web 3 --strategy serial")  # its first server's deploy
    world.runner.stop()
    world.provider.gate.set()
    assert world.runner.wait(30)
    # What a crash of a parallel run can leave: one server along (a crash in its deploy leaves
    # it working there), the others not begun.
    with world.store.database.write() as conn:
        conn.execute("UPDATE runs SET strategy = 'parallel' WHERE id = ?", [run.id])
        working = "UPDATE servers SET status = 'working' WHERE run_id = ? AND slot = 1"
        conn.execute(working, [run.id])
    along = world.stored(run.id).servers
    assert [(s.status, s.step) for s in along][:1] == [(ServerStatus.WORKING, Step.DEPLOY)]
    assert {s.status for s in along[1:]} == {ServerStatus.PENDING}

    world.provider.held = False
    world.provider.calls.clear()
    assert resumed(world) == [run.id]

    done = world.stored(run.id)
    assert done.state == RunState.SUCCEEDED
    # The two new ones launch and scrub; the first joins them at its deploy, found again
    # through the idempotent launch, and is not scrubbed or launched twice.
    assert world.provider.calls[:4] == [("launch", 2), ("scrub", 2), ("launch", 1), ("deploy", 3)]
    live = world.provider.list_servers({TAG_APP: "web"})
    assert len(live) == 3


def test_whatever_raises_between_calls_rolls_back_every_server_of_the_cohort(
    tmp_path: Path,
) -> None:
    world = counted_world(tmp_path)

    def broken(point: str) -> None:
        if point == "deploy_started:2":
            raise sqlite3.OperationalError("disk I/O error")  # say, the store cannot be read

    world.runner.checkpoint = broken

    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.FAILED
    assert {s.status for s in run.servers} == {ServerStatus.FAILED}
    assert len({s.reason for s in run.servers}) == 1
    assert (run.servers[0].reason or "").startswith("internal error (reference")
    assert all("rolled back (terminated" in (s.cleanup or "") for s in run.servers)
    assert world.provider.list_servers({TAG_APP: "web"}) == []
