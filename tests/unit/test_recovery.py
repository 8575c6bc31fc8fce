"""After a crash: runs resume where they stopped, and servers no run accounts for are removed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pipeline.domain.models import RunState, ServerStatus, Step
from pipeline.execution import recovery
from pipeline.execution.runner import Runner
from pipeline.services.replies import RunReply
from pipeline.state import measured
from providers.base import (
    TAG_APP,
    TAG_ENV,
    TAG_RUN,
    LaunchRequest,
    ProviderError,
    Script,
    ScriptResult,
    Server,
    ServerSpec,
    Target,
)
from providers.local import LocalProvider
from tests.conftest import (
    DEPLOY_OK,
    IMAGE_FILES,
    START,
    World,
    config_text,
    make_world,
    resumed,
    world_around,
)


def launch(world: World, key: str, run: str = "99") -> str:
    image = world.provider.resolve_image("family:web")
    server = world.provider.launch(
        LaunchRequest(
            key=key,
            name=key,
            image=image,
            spec=ServerSpec(),
            tags={TAG_APP: "web", TAG_ENV: "staging", TAG_RUN: run},
        )
    )
    return server.id


def test_a_run_interrupted_mid_deploy_resumes_without_a_second_server(world: World) -> None:
    reply = world.say("scale web 2")
    assert isinstance(reply, RunReply) and reply.run is not None
    run = reply.run
    # What a crash leaves behind: approved and running, slot 1 launched and half deployed.
    assert world.store.approve(run.id, "UBOB", world.clock()).started
    world.store.transition(
        run.id, [RunState.APPROVED], RunState.RUNNING, world.clock(), actor="byoi"
    )
    slot1 = run.servers[0]
    server_id = launch(world, slot1.key, str(run.id))
    world.store.update_server(
        run.id,
        1,
        world.clock(),
        event="deploy_started",
        status=ServerStatus.WORKING,
        step=Step.DEPLOY,
        provider_id=server_id,
    )

    resumed = recovery.resume(world.store, world.runner, world.clock())
    done = world.finish(run.id)

    assert resumed == [run.id]
    assert done.state == RunState.SUCCEEDED
    live = world.provider.list_servers({TAG_APP: "web"})
    assert len(live) == 2
    assert done.servers[0].provider_id == server_id
    assert world.provider.target_members(Target("web-lb")) == sorted(s.id for s in live)
    assert "resumed" in [e.event for e in world.store.audit_events(run.id)]


def test_the_reconciler_removes_only_this_installations_unaccounted_servers(world: World) -> None:
    kept_run = world.scale_and_approve("scale web 1")
    ours = launch(world, f"byoi-{world.store.install_id}-99-1")
    world.provider.register(world.provider.list_servers({"byoi:key": ours})[0], Target("web-lb"))
    foreign = launch(world, "byoi-zzzzzz-1-1")
    by_hand = launch(world, "hand-made")

    orphans = recovery.reconcile(
        world.store, world.config, world.runner.provider_for, world.clock()
    )

    assert [(o.server_id, o.outcome) for o in orphans] == [(ours, "terminated")]
    live = {s.id for s in world.provider.list_servers({TAG_APP: "web"})}
    assert live == {kept_run.servers[0].provider_id, foreign, by_hand}
    assert ours not in world.provider.target_members(Target("web-lb"))
    assert any(e.event == "orphan" and ours in e.detail for e in world.store.audit_events())


def test_servers_of_failed_slots_are_orphans_but_in_flight_ones_are_not(world: World) -> None:
    run = world.request("scale web 2")
    world.store.approve(run.id, "UBOB", world.clock())
    world.store.transition(
        run.id, [RunState.APPROVED], RunState.RUNNING, world.clock(), actor="byoi"
    )
    in_flight = launch(world, run.servers[0].key, str(run.id))
    failed = launch(world, run.servers[1].key, str(run.id))
    world.store.update_server(
        run.id,
        2,
        world.clock(),
        event="failed",
        status=ServerStatus.FAILED,
        reason="rollback failed",
    )

    orphans = recovery.reconcile(
        world.store, world.config, world.runner.provider_for, world.clock()
    )

    assert [o.server_id for o in orphans] == [failed]
    assert [s.id for s in world.provider.list_servers({TAG_APP: "web"})] == [in_flight]


class _ShutdownInDeploy:
    """The local provider, with byoi's shutdown beginning while the first deploy runs (as a
    SIGTERM would): the deploy ends and is stored, and no step starts after it."""

    def __init__(self, inner: LocalProvider) -> None:
        self.inner = inner
        self.runner: Runner | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        result = self.inner.run_script(server, script)
        self._stop_after(script)
        return result

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        results = self.inner.run_script_all(jobs)
        for _, script in jobs:
            self._stop_after(script)
        return results

    def _stop_after(self, script: Script) -> None:
        if script.name == "deploy" and self.runner is not None:
            self.runner.stop()


@pytest.mark.parametrize("strategy", ["parallel", "serial"])
def test_a_step_that_ended_before_a_shutdown_is_not_done_again_on_the_next_start(
    tmp_path: Path, strategy: str
) -> None:
    counted = f"{DEPLOY_OK} && echo $BYOI_SERVER >> deploys"
    first = make_world(tmp_path, config_text(deploy_command=repr(counted)))
    first.store.close()
    provider = _ShutdownInDeploy(first.provider)
    world = world_around(tmp_path, provider, first.clock)
    provider.runner = world.runner

    stopped = world.scale_and_approve(f"scale web 2 --strategy {strategy}")

    assert stopped.state == RunState.RUNNING
    waiting = [s for s in stopped.servers if s.step == Step.DEPLOY]
    assert waiting and all(s.status == ServerStatus.PENDING for s in waiting)
    provider.runner = None
    assert resumed(world) == [stopped.id]
    done = world.stored(stopped.id)
    deploys = sorted(
        line for f in (tmp_path / "local").rglob("deploys") for line in f.read_text().split()
    )
    world.store.close()

    assert done.state == RunState.SUCCEEDED
    assert deploys == sorted(s.provider_id for s in done.servers)  # once each, not twice


def test_take_over_carries_on_a_left_run_and_not_one_this_runner_carries_out(
    world: World,
) -> None:
    left = world.request("scale web 1")
    assert world.store.approve(left.id, "UBOB", world.clock()).started  # approved, not started
    assert recovery.take_over(world.store, world.runner, world.clock()) == [left.id]
    assert recovery.take_over(world.store, world.runner, world.clock()) == []  # carried out
    assert world.finish(left.id).state == RunState.SUCCEEDED
    assert recovery.take_over(world.store, world.runner, world.clock()) == []  # ended
    resumed = [e for e in world.store.audit_events(left.id) if e.event == "resumed"]
    assert len(resumed) == 1


def test_take_over_leaves_a_roll_paused_after_its_canary_for_continue(world: World) -> None:
    world.scale_and_approve("scale web 2")
    world.provider.create_image("web-new", IMAGE_FILES, family="web", created_at=START)
    roll = world.request("roll web --canary --batch 1")
    world.say(f"approve {roll.id}", "UBOB")
    world.runner.wait(30)
    assert world.stored(roll.id).state == RunState.RUNNING
    assert measured.options_of(world.store, roll.id).paused

    assert recovery.take_over(world.store, world.runner, world.clock()) == []

    world.say(f"continue {roll.id}", "UBOB")
    assert world.finish(roll.id).state == RunState.SUCCEEDED
    assert not [e for e in world.store.audit_events(roll.id) if e.event == "resumed"]
