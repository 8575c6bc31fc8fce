"""Whatever fails inside a slot rolls it back; a shutdown pauses a run for the next start."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline.domain.models import RunState, ServerStatus, Step
from providers.base import TAG_APP, Script, ScriptResult, Server, Target
from providers.local import LocalProvider
from tests.conftest import World, make_world, resumed, world_around


class BrokenDeploy(LocalProvider):
    """A provider with a bug in reading the deploy answer of slot 2 (not a ProviderError):
    asked for one server it raises; asked for many, that server's answer is no result."""

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        if script.name == "deploy" and server.id.endswith("-2"):
            raise KeyError("ResponseCode")
        return super().run_script(server, script)

    def run_script_all(self, jobs: Sequence[tuple[Server, Script]]) -> list[object]:
        answers: list[object] = list(super().run_script_all(jobs))
        for index, (server, script) in enumerate(jobs):
            if script.name == "deploy" and server.id.endswith("-2"):
                answers[index] = {"ResponseCode": 0}
        return answers


@pytest.mark.parametrize("strategy", ["parallel", "serial"])  # one call for both, one each
def test_a_non_provider_exception_in_a_slot_rolls_it_back(tmp_path: Path, strategy: str) -> None:
    base = make_world(tmp_path)
    world = world_around(tmp_path, BrokenDeploy(base.provider.root, clock=base.clock))

    run = world.scale_and_approve(f"scale web 2 --strategy {strategy}")

    assert run.state == RunState.PARTIALLY_FAILED
    ok, broken = run.servers
    assert ok.status == ServerStatus.DONE
    assert broken.status == ServerStatus.FAILED and broken.step == Step.DEPLOY
    assert re.fullmatch(r"internal error \(reference [0-9a-f]{6}\)", broken.reason or "")
    assert "rolled back (terminated" in (broken.cleanup or "")
    live = world.provider.list_servers({TAG_APP: "web"})
    assert [s.id for s in live] == [ok.provider_id]
    assert world.provider.target_members(Target("web-lb")) == [ok.provider_id]


class GatedDeploy(LocalProvider):
    """Deploys wait at a gate, so a test can stop byoi while one is in flight."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        if script.name == "deploy":
            self.entered.set()
            assert self.gate.wait(30)
        return super().run_script(server, script)


def test_a_stopped_runner_lets_the_step_in_flight_finish_and_starts_no_other(
    world: World,
) -> None:
    provider = GatedDeploy(world.provider.root)
    gated = world_around(world.root, provider, world.clock)
    run = gated.request("scale web 2 --strategy serial")
    gated.say(f"approve {run.id}", "UBOB")
    assert provider.entered.wait(30)

    gated.runner.stop()
    provider.gate.set()
    assert gated.runner.wait(30)

    paused = gated.store.run(run.id)
    assert paused is not None and paused.state == RunState.RUNNING
    first, rest = paused.servers
    assert (first.status, first.step) == (ServerStatus.PENDING, Step.DEPLOY)  # waits after it
    assert (rest.status, rest.step) == (ServerStatus.PENDING, None)  # never started nor skipped
    events = [e.event for e in gated.store.audit_events(run.id)]
    assert "deploy_done" in events and "paused" in events and "register_started" not in events

    # The next start resumes it where it stopped.
    assert resumed(gated, world.provider) == [run.id]
    done = gated.store.run(run.id)
    assert done is not None and done.state == RunState.SUCCEEDED
    assert len(world.provider.list_servers({TAG_APP: "web"})) == 2


def test_a_stopped_runner_starts_no_new_run(world: World) -> None:
    run = world.request("scale web 1")
    world.runner.stop()

    world.say(f"approve {run.id}", "UBOB")

    assert world.runner.wait(5)
    stored = world.store.run(run.id)
    assert stored is not None and stored.state == RunState.APPROVED  # resumed on next start
    assert world.provider.list_servers({}) == []
