"""Runs on the local provider: scale up and down, rollback, strategies, one run at a time."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest

from bot.shell import text
from bot.slack.blocks import messages
from pipeline.domain.models import Run, RunKind, RunState, ServerStatus, Step
from pipeline.errors import Busy, Refused, UserError
from pipeline.services.replies import (
    HistoryReply,
    ImagesReply,
    InfoReply,
    RunReply,
    StatusReply,
)
from providers.base import (
    TAG_APP,
    TAG_ENV,
    TAG_KEY,
    TAG_RUN,
    ProviderError,
    Script,
    ScriptResult,
    Server,
    Target,
)
from providers.local import LocalProvider
from tests.conftest import (
    DEPLOY_OK,
    IMAGE_FILES,
    START,
    World,
    config_text,
    eventually,
    make_world,
    world_around,
)

FAIL_ON_SLOT_2 = repr(
    'case "$BYOI_SERVER" in *-2) echo "migrations failed: db unreachable" >&2; exit 3;; esac; '
    'mkdir -p current && echo "$BYOI_RELEASE" > current/VERSION'
)


def rootfs(world: World, server_id: str) -> Path:
    return world.provider.root / "servers" / server_id / "rootfs"


def test_scale_up_builds_scrubbed_deployed_registered_servers(world: World) -> None:
    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.SUCCEEDED
    assert [s.status for s in run.servers] == [ServerStatus.DONE] * 3
    live = world.provider.list_servers({TAG_APP: "web", TAG_ENV: "staging"})
    assert sorted(s.id for s in live) == sorted(s.provider_id for s in run.servers)
    assert world.provider.target_members(Target("web-lb")) == sorted(s.id for s in live)
    for server in live:
        assert server.tags[TAG_RUN] == str(run.id)
        assert server.tags[TAG_KEY] == server.id
        root = rootfs(world, server.id)
        assert (root / "etc/machine-id").read_text() == ""
        assert not list((root / "etc/ssh").glob("ssh_host_*"))
        assert not (root / "var/lib/cloud/instances").exists()
        assert not (root / "srv/app/shared").exists()
        assert not (root / "srv/app/.env").exists()
        assert (root / "srv/app/current/VERSION").read_text() == "v2\n"
        assert (root / "etc/hostname").read_text() == "source\n"  # not ours to remove


def test_each_step_is_recorded_before_and_after_in_the_audit_log(world: World) -> None:
    run = world.scale_and_approve("scale web 1")

    events = [e.event for e in world.store.audit_events(run.id)]
    for step in ("clone", "scrub", "deploy", "register"):
        assert events.index(f"{step}_started") < events.index(f"{step}_done")
    assert events[0] == "requested"
    assert "approved" in events
    assert events[-1] == "succeeded"


def test_failing_deploy_rolls_back_that_server_and_marks_the_run_partially_failed(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_2))

    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.PARTIALLY_FAILED
    failed = [s for s in run.servers if s.status == ServerStatus.FAILED]
    assert len(failed) == 1
    assert failed[0].key.endswith("-2")
    assert failed[0].step == Step.DEPLOY
    assert "deploy exited 3" in (failed[0].reason or "")
    assert "migrations failed" in (failed[0].reason or "")
    assert "rolled back" in (failed[0].cleanup or "")
    live = world.provider.list_servers({TAG_APP: "web"})
    assert len(live) == 2
    assert failed[0].key not in {s.id for s in live}
    assert world.provider.target_members(Target("web-lb")) == sorted(s.id for s in live)


def test_serial_stops_at_the_first_failure(tmp_path: Path) -> None:
    world = make_world(tmp_path, config_text(deploy_command=FAIL_ON_SLOT_2))

    run = world.scale_and_approve("scale web 3 --strategy serial")

    assert [s.status for s in run.servers] == [
        ServerStatus.DONE,
        ServerStatus.FAILED,
        ServerStatus.SKIPPED,
    ]
    assert run.state == RunState.PARTIALLY_FAILED
    assert run.reason == "1 of 3 failed, 1 not started"
    assert len(world.provider.list_servers({TAG_APP: "web"})) == 1


def test_failed_health_check_rolls_back_before_registering(tmp_path: Path) -> None:
    world = make_world(tmp_path, config_text(health_command="'exit 1'"))

    run = world.scale_and_approve("scale web 2")

    assert run.state == RunState.FAILED
    assert all("health check exited 1" in (s.reason or "") for s in run.servers)
    assert world.provider.list_servers({TAG_APP: "web"}) == []
    assert world.provider.target_members(Target("web-lb")) == []


def most_at_once(spans: Path) -> int:
    """The most deploys that ran at the same moment, from the start and end each wrote."""
    edges = []
    for path in spans.iterdir():
        began, ended = (float(line) for line in path.read_text().split())
        edges += [(began, 1), (ended, -1)]
    inside = most = 0
    for _, change in sorted(edges):  # an end before a start at the same instant
        inside += change
        most = max(most, inside)
    return most


@pytest.mark.parametrize("count", [5, 6])
def test_parallel_is_bounded_by_max_parallel(tmp_path: Path, count: int) -> None:
    spans = tmp_path / "spans"
    spans.mkdir()
    # Each deploy notes when it ran, as processes on the servers: whichever way byoi starts
    # them (a thread per server, or one call for many), this is what ran at once.
    deploy = f"{DEPLOY_OK}; date +%s.%N > {spans}/$$; sleep 0.4; date +%s.%N >> {spans}/$$"
    base = make_world(tmp_path, config_text(max_parallel="2", deploy_command=repr(deploy)))
    base.store.close()
    world = world_around(tmp_path, LocalProvider(base.provider.root), base.clock)

    run = world.scale_and_approve(f"scale web {count}")

    assert run.state == RunState.SUCCEEDED
    assert len(list(spans.iterdir())) == count
    assert most_at_once(spans) == 2  # two at once (not one after the other), never three


def test_a_second_request_for_the_same_app_and_env_is_refused(world: World) -> None:
    first = world.say("scale web 2")
    second = world.say("scale web 4", "UBOB", expect=Busy)

    assert isinstance(first, RunReply) and first.run is not None
    assert isinstance(second, Busy)
    assert f"already has run {first.run.id}" in second.message
    assert "requested by UALICE" in second.message
    assert world.request("scale web 1 --env production").env == "production"


def test_scale_down_removes_servers_on_the_oldest_image_first(world: World) -> None:
    world.scale_and_approve("scale web 2")
    newer = world.provider.create_image(
        "web-newer",
        IMAGE_FILES,
        family="web",
        versions={"ruby_version": "3.2.2", "operating_system": "ubuntu2204"},
        created_at=START - timedelta(days=1),
    )
    world.clock.advance(minutes=5)
    world.scale_and_approve("scale web 4")
    on_newer = {
        s.id for s in world.provider.list_servers({TAG_APP: "web"}) if s.image_id == newer.id
    }
    assert len(on_newer) == 2

    run = world.scale_and_approve("scale web -2")

    assert run.kind == RunKind.SCALE_DOWN
    assert run.state == RunState.SUCCEEDED
    left = {s.id for s in world.provider.list_servers({TAG_APP: "web"})}
    assert left == on_newer
    assert world.provider.target_members(Target("web-lb")) == sorted(on_newer)


def test_scale_down_never_goes_below_min_servers(tmp_path: Path) -> None:
    world = make_world(tmp_path, config_text(min_servers="1"))
    world.scale_and_approve("scale web 2")

    reply = world.say("scale web 0", expect=UserError)

    assert isinstance(reply, UserError)
    assert "below min_servers (1)" in reply.message


def test_counts_beyond_the_limits_are_refused(world: World) -> None:
    above = world.say("scale web 11", expect=UserError)
    negative = world.say("scale web -1", expect=UserError)
    same = world.say("scale web 0")

    assert isinstance(above, UserError) and "above max_servers (10)" in above.message
    assert isinstance(negative, UserError) and "below zero" in negative.message
    assert isinstance(same, InfoReply) and "nothing to do" in same.message
    assert world.store.runs() == []


def test_dry_run_shows_the_plan_and_starts_nothing(world: World) -> None:
    reply = world.say("scale web 3 --dry-run")

    assert isinstance(reply, RunReply)
    assert reply.run is None
    assert reply.plan is not None and reply.plan.desired == 3
    assert reply.plan.image.name == "web-base"
    assert world.store.runs() == []


def test_cancel_before_approval_cancels_the_run(world: World) -> None:
    run_id = world.request("scale web 2").id

    world.say(f"cancel {run_id}")

    run = world.store.run(run_id)
    assert run is not None and run.state == RunState.CANCELLED
    assert world.say(f"approve {run_id}", "UBOB", expect=RunReply).message.endswith("cancelled.")


class HeldDeploys(LocalProvider):
    """Deploys of every server but the first wait until the test releases them."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        if script.name == "deploy" and not server.id.endswith("-1"):
            assert self.release.wait(30)
        return super().run_script(server, script)

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        """A cohort's scripts (the runner's path with many servers per call): held the same."""
        if any(s.name == "deploy" and not server.id.endswith("-1") for server, s in jobs):
            assert self.release.wait(30)
        return super().run_script_all(jobs)


def deploying(tmp_path: Path, command: str, config: str | None = None) -> tuple[World, int]:
    """A world on HeldDeploys where ``command`` was approved and its second server deploys (held
    until the test sets ``provider.release``)."""
    base = make_world(tmp_path, config)
    base.store.close()
    world = world_around(tmp_path, HeldDeploys(base.provider.root), base.clock)
    run_id = world.request(command).id
    world.say(f"approve {run_id}", "UBOB")
    eventually(lambda: world.stored(run_id).servers[1].step == Step.DEPLOY)
    return world, run_id


def released(world: World, run_id: int) -> Run:
    """The run once the held deploys go on and it ends."""
    cast(HeldDeploys, world.provider).release.set()
    return world.finish(run_id)


def skipped_together(root: Path) -> list[list[int]]:
    """The slots of each write that skipped servers, from the audit."""
    audit = sqlite3.connect(root / "byoi.db")
    try:
        rows = audit.execute("SELECT detail FROM audit WHERE event = 'skipped'").fetchall()
    finally:
        audit.close()
    return [json.loads(detail)["slots"] for (detail,) in rows]


def test_cancel_during_a_run_keeps_finished_servers_and_rolls_back_the_rest(
    tmp_path: Path,
) -> None:
    base = make_world(tmp_path, config_text(max_parallel="1"))
    base.store.close()
    provider = HeldDeploys(base.provider.root)
    world = world_around(tmp_path, provider, base.clock)
    run_id = world.request("scale web 3").id
    world.say(f"approve {run_id}", "UBOB")
    eventually(lambda: world.stored(run_id).servers[0].status == ServerStatus.DONE)

    first = world.say(f"cancel {run_id}", expect=RunReply)
    again = world.say(f"cancel {run_id}", expect=RunReply)
    provider.release.set()
    run = world.finish(run_id)

    assert first.message.startswith("Cancelling")
    assert again.message == f"Run {run_id} is already being cancelled."

    assert run.state == RunState.CANCELLED
    assert [s.status for s in run.servers] == [
        ServerStatus.DONE,
        ServerStatus.CANCELLED,  # in flight: rolled back
        ServerStatus.SKIPPED,  # the cancel came before it started: nothing to roll back
    ]
    assert run.servers[2].reason == "not started: the run was cancelled"
    assert run.reason == "1 server(s) done, 1 stopped, 1 not started"
    live = world.provider.list_servers({TAG_APP: "web"})
    assert [s.id for s in live] == [run.servers[0].provider_id]


def test_a_cancelled_serial_run_says_its_rest_was_skipped_for_the_cancel(tmp_path: Path) -> None:
    world, run_id = deploying(tmp_path, "scale web 4 --strategy serial")

    world.say(f"cancel {run_id}", expect=RunReply)
    run = released(world, run_id)

    assert [s.status for s in run.servers] == [
        ServerStatus.DONE,
        ServerStatus.CANCELLED,
        ServerStatus.SKIPPED,
        ServerStatus.SKIPPED,
    ]
    assert {s.reason for s in run.servers[2:]} == {"not started: the run was cancelled"}
    assert skipped_together(tmp_path) == [[3, 4]]  # one change, told at once


def test_status_says_where_a_server_of_the_run_in_flight_is(tmp_path: Path) -> None:
    world, run_id = deploying(tmp_path, "scale web 2")

    shown = text.render(world.say("status web", expect=StatusReply))
    released(world, run_id)

    assert f"in run {run_id}: deploy working" in shown, shown
    assert "none recorded" not in shown, shown


def test_a_cancel_skips_the_cohorts_not_started_yet_together(tmp_path: Path) -> None:
    world, run_id = deploying(tmp_path, "scale web 6", config_text(max_parallel="2"))

    world.say(f"cancel {run_id}", expect=RunReply)
    run = released(world, run_id)

    statuses = [s.status for s in run.servers]
    assert statuses == [ServerStatus.CANCELLED] * 2 + [ServerStatus.SKIPPED] * 4
    assert world.provider.list_servers({TAG_APP: "web"}) == []
    assert skipped_together(tmp_path) == [[3, 4, 5, 6]]


class HeldDrains(LocalProvider):
    """A drain takes its server out of service, then waits (its drain time) until released."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.draining = threading.Event()
        self.release = threading.Event()

    def deregister(self, server: Server, target: Target) -> None:
        super().deregister(server, target)
        self.draining.set()
        assert self.release.wait(30)


def test_a_cancelled_scale_down_puts_the_servers_it_drained_back_in_service(
    tmp_path: Path,
) -> None:
    base = make_world(tmp_path)
    base.scale_and_approve("scale web 2")
    base.store.close()
    provider = HeldDrains(base.provider.root)
    world = world_around(tmp_path, provider, base.clock)
    live = sorted(s.id for s in provider.list_servers({TAG_APP: "web"}))
    run_id = world.request("scale web 0").id
    world.say(f"approve {run_id}", "UBOB")
    assert provider.draining.wait(30)

    world.say(f"cancel {run_id}", expect=RunReply)
    provider.release.set()
    run = world.finish(run_id)

    assert run.state == RunState.CANCELLED
    assert sorted(s.id for s in provider.list_servers({TAG_APP: "web"})) == live
    assert provider.target_members(Target("web-lb")) == live  # not left out of service
    drained = [s for s in run.servers if s.step == Step.DRAIN]
    assert drained and all(s.cleanup == "back in web-lb" for s in drained), run.servers


def test_unknown_apps_and_environments_get_specific_errors(world: World) -> None:
    app = world.say("scale nope 2", expect=UserError)
    env = world.say("scale web 2 --env qa", expect=UserError)

    assert isinstance(app, UserError) and app.message == "Unknown app `nope` (apps: web)."
    assert isinstance(env, UserError)
    assert env.message == "web has no environment `qa` (environments: staging, production)."
    assert app.usage is not None and app.usage.startswith("scale <app>")


def test_non_operators_cannot_request(world: World) -> None:
    reply = world.say("scale web 2", "UMALLORY", expect=Refused)

    assert isinstance(reply, Refused)
    assert "not an operator" in reply.message
    assert world.store.runs() == []


def test_status_and_history_report_servers_and_runs(world: World) -> None:
    run = world.scale_and_approve("scale web 2")

    status = world.say("status web", expect=StatusReply)
    history = world.say("history", expect=HistoryReply)

    assert [len(e.servers) for e in status.envs] == [2, 0]
    assert status.envs[0].servers[0].image_name == "web-base"
    assert [r.id for r in history.runs] == [run.id]
    assert history.runs[0].approvers == ("UBOB",)


def test_status_lists_servers_in_the_order_they_were_counted(world: World) -> None:
    world.scale_and_approve("scale web 10")

    status = world.say("status web", expect=StatusReply)

    keys = [view.server.key or "" for view in status.envs[0].servers]
    assert [int(k.rsplit("-", 1)[1]) for k in keys] == list(range(1, 11))  # not 1, 10, 2, 3


def test_history_says_who_cancelled_a_run(world: World) -> None:
    run = world.request("scale web 2")
    world.say(f"cancel {run.id}", "UBOB")

    history = world.say("history", expect=HistoryReply)

    assert history.cancelled_by == {run.id: "UBOB"}
    assert "cancelled by UBOB" in text.history_text(history.runs, history.cancelled_by)
    assert "cancelled by" in str(messages.history_blocks(history.runs, history.cancelled_by))


def test_images_reports_age_versions_and_staleness(world: World) -> None:
    world.clock.advance(days=40)

    reply = world.say("images web", expect=ImagesReply)

    staging, production = reply.images
    assert staging.image.name == "web-base"
    assert staging.staleness.age_days == 43
    assert [f.kind for f in staging.staleness.findings] == ["age"]
    assert staging.declared == {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"}
    assert production.env == "production"


def test_refresh_snapshots_a_live_server_into_the_family_for_the_next_scale(world: World) -> None:
    world.scale_and_approve("scale web 1")
    world.clock.advance(days=1)
    (server,) = world.provider.list_servers({})

    run = world.scale_and_approve(f"refresh web --from {server.id}")

    assert run.kind == RunKind.REFRESH and run.state == RunState.SUCCEEDED
    newest = world.provider.resolve_image("family:web")
    assert newest.name != "web-base"
    assert dict(newest.versions) == {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"}
    plan = world.say("scale web 2 --dry-run", expect=RunReply).plan
    assert plan.image.id == newest.id


def test_refresh_from_needs_a_live_server(world: World) -> None:
    reply = world.say("refresh web --from byoi-nothing-1-1", expect=UserError)

    assert isinstance(reply, UserError)
    assert reply.message == "web/staging has no server `byoi-nothing-1-1` to snapshot."


def test_a_briefly_locked_database_delays_a_run_but_loses_nothing(world: World) -> None:
    import sqlite3
    import threading

    run_id = world.request("scale web 2").id
    other = sqlite3.connect(world.store.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    threading.Timer(1.5, lambda: other.execute("COMMIT")).start()

    world.say(f"approve {run_id}", "UBOB")
    run = world.finish(run_id)
    other.close()

    assert run.state == RunState.SUCCEEDED
    events = world.store.audit_events(run_id)
    done = [json.loads(e.detail) for e in events if e.event == "done"]
    assert sorted(slot for d in done for slot in d.get("slots", [d.get("slot")])) == [1, 2]
    assert events[-1].event == "succeeded"
