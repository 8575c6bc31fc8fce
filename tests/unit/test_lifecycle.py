"""The image lifecycle on the local provider: measured versions, bakes, rolls, prune."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.domain.models import RunKind, RunState, ServerStatus
from pipeline.errors import UserError
from pipeline.execution.recovery import reconcile, resume
from pipeline.services.replies import InfoReply, StatusReply
from pipeline.state import measured
from providers.base import TAG_BAKE_HASH, TAG_BAKED_FROM, Image, Target
from tests.conftest import IMAGE_FILES, START, World, config_text, make_world

BAKE = (
    'printf \'#!/bin/sh\\necho "ruby %sp0"\\n\' "$BYOI_DECLARED_RUBY_VERSION" '
    '> "$BYOI_ROOT/usr/local/bin/ruby"'
)


def old_ruby(world: World, days: int = 40) -> Image:
    """A newer image in the family whose Ruby is 3.1.2 (the manifest declares 3.2.2)."""
    files = {**IMAGE_FILES, "/usr/local/bin/ruby": "#!/bin/sh\necho 'ruby 3.1.2p20'\n"}
    return world.provider.create_image(
        "web-old-ruby",
        files,
        family="web",
        versions={"ruby_version": "3.1.2", "operating_system": "ubuntu2204"},
        created_at=START - timedelta(days=1),
    )


@pytest.fixture
def baking(tmp_path: Path) -> World:
    return make_world(tmp_path / "b", config_text(bake=json.dumps(BAKE)))


def test_a_new_server_records_what_its_probes_measured(world: World) -> None:
    old_ruby(world)

    run = world.scale_and_approve("scale web 2")

    assert run.state == RunState.SUCCEEDED
    assert all(s.step is not None for s in run.servers)
    status = world.say("status web")
    assert isinstance(status, StatusReply)
    staging = status.envs[0]
    assert [dict(v.versions) for v in staging.servers] == [
        {"operating_system": "ubuntu2204", "ruby_version": "3.1.2"}
    ] * 2
    for server in world.provider.list_servers({}):
        assert server.tags["byoi:version:ruby_version"] == "3.1.2"


def test_refresh_bakes_on_a_builder_and_publishes_what_matches(baking: World) -> None:
    base = old_ruby(baking)

    run = baking.scale_and_approve("refresh web")

    assert run.kind == RunKind.BAKE and run.state == RunState.SUCCEEDED, run.reason
    assert "published into family web; measured versions match" in (run.reason or "")
    newest = baking.provider.resolve_image("family:web")
    assert dict(newest.versions) == {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"}
    assert newest.tags[TAG_BAKED_FROM] == base.id and len(newest.tags[TAG_BAKE_HASH]) == 16
    assert baking.provider.list_servers({}) == []  # the builder was terminated
    (builder,) = run.servers
    assert (builder.cleanup or "").startswith("builder (terminated byoi-")
    assert builder.step == "snapshot" and builder.status == ServerStatus.DONE


def test_a_bake_that_does_not_reach_the_declared_versions_is_kept_unpublished(
    world: World,
) -> None:
    old = old_ruby(world)  # and no bake script: nothing upgrades Ruby

    run = world.scale_and_approve("refresh web")

    assert run.state == RunState.SUCCEEDED
    assert "kept unpublished: measured ≠ declared: ruby_version 3.1.2 ≠ 3.2.2" in (run.reason or "")
    assert world.provider.resolve_image("family:web").id == old.id
    made = measured.image_of(world.store, run.id)
    assert made is not None and not made.published
    kept = world.provider.resolve_image(made.image_id)
    assert kept.family is None and kept.versions["ruby_version"] == "3.1.2"
    assert world.service.views.scan(world.clock()).findings > 0  # the drift is still reported
    assert world.provider.list_servers({}) == []


def test_force_publishes_a_mismatch_and_says_so(world: World) -> None:
    old_ruby(world)

    run = world.scale_and_approve("refresh web --force")

    assert "published into family web with --force despite: ruby_version 3.1.2" in (
        run.reason or ""
    )
    assert world.provider.resolve_image("family:web").versions["ruby_version"] == "3.1.2"


def test_a_failing_bake_terminates_the_builder(tmp_path: Path) -> None:
    world = make_world(tmp_path / "f", config_text(bake="'echo no mirror >&2; exit 7'"))

    run = world.scale_and_approve("refresh web")

    assert run.state == RunState.FAILED
    assert run.servers[0].reason == "bake exited 7: bake: web (staging) | no mirror"
    assert "rolled back (terminated" in (run.servers[0].cleanup or "")
    assert world.provider.list_servers({}) == []


def test_refresh_from_a_server_records_its_measured_versions(world: World) -> None:
    old_ruby(world)
    world.scale_and_approve("scale web 1")
    (server,) = world.provider.list_servers({})

    run = world.scale_and_approve(f"refresh web --from {server.id}")

    made = measured.image_of(world.store, run.id)
    assert made is not None and made.versions["ruby_version"] == "3.1.2" and not made.published


def roll_world(baking: World, count: int) -> None:
    old_ruby(baking)
    baking.scale_and_approve(f"scale web {count}")
    baking.clock.advance(minutes=5)
    baking.scale_and_approve("refresh web")


def _target() -> Target:
    return Target("web-lb")


def test_roll_replaces_every_server_batch_by_batch(baking: World) -> None:
    roll_world(baking, 4)
    image = baking.provider.resolve_image("family:web")
    sizes: list[int] = []
    baking.runner.checkpoint = lambda point: sizes.append(
        len(baking.provider.target_members(_target()))
    )

    run = baking.scale_and_approve("roll web --batch 2")

    assert run.kind == RunKind.ROLL and run.state == RunState.SUCCEEDED, run.reason
    servers = baking.provider.list_servers({"byoi:env": "staging"})
    assert len(servers) == 4 and {s.image_id for s in servers} == {image.id}
    assert sorted(baking.provider.target_members(_target())) == sorted(s.id for s in servers)
    assert min(sizes) >= 4 and max(sizes) <= 6
    status = baking.say("status web")
    assert isinstance(status, StatusReply)
    assert {v.versions["ruby_version"] for v in status.envs[0].servers} == {"3.2.2"}
    assert baking.service.views.scan(baking.clock()).observations[0].findings == 0


def test_a_failed_new_server_rolls_back_its_batch_and_keeps_the_old_ones(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path / "r", config_text(bake=json.dumps(BAKE)))
    roll_world(world, 4)
    old_ids = sorted(s.id for s in world.provider.list_servers({"byoi:env": "staging"}))
    reply = world.say("roll web --batch 2")
    run = reply.run  # type: ignore[attr-defined]
    failing = run.servers[4].key  # slot 5: the first new server of batch 2
    world.runner.checkpoint = lambda point: _fail_deploy(world, point, failing)

    world.say(f"approve {run.id}", "UBOB")
    run = world.finish(run.id)

    assert run.state == RunState.PARTIALLY_FAILED, run.reason
    by_slot = {s.slot: s for s in run.servers}
    assert [by_slot[i].status for i in (1, 2, 3, 4)] == [ServerStatus.DONE] * 4
    assert by_slot[5].status == ServerStatus.FAILED
    assert by_slot[7].status in (ServerStatus.CANCELLED, ServerStatus.FAILED)
    assert by_slot[6].status == by_slot[8].status == ServerStatus.SKIPPED
    live = world.provider.list_servers({"byoi:env": "staging"})
    assert len(live) == 4
    assert {s.id for s in live} >= {by_slot[6].provider_id, by_slot[8].provider_id}
    assert set(old_ids) >= {by_slot[6].provider_id, by_slot[8].provider_id}
    assert len(world.provider.target_members(_target())) == 4


def _fail_deploy(world: World, point: str, key: str) -> None:
    if point == "deploy_started:5":
        # The server is up; its deploy now meets a broken release.
        server = next(s for s in world.provider.list_servers({}) if s.key == key)
        (Path(server.address or "") / "srv/app").mkdir(parents=True, exist_ok=True)
        (Path(server.address or "") / "srv/app/current").write_text("not a directory")


def test_a_canary_roll_pauses_then_continues(baking: World) -> None:
    roll_world(baking, 3)
    reply = baking.say("roll web --canary --batch 2")
    run_id = reply.run.id  # type: ignore[attr-defined]
    baking.say(f"approve {run_id}", "UBOB")
    baking.runner.wait(30)

    paused = baking.store.run(run_id)
    assert paused is not None and paused.state == RunState.RUNNING
    assert measured.options_of(baking.store, run_id).paused
    assert len(baking.provider.list_servers({"byoi:env": "staging"})) == 4  # 3 + the canary
    assert baking.say("continue 99", expect=UserError).message == "There is no run 99."

    reply = baking.say(f"continue {run_id}", "UBOB")
    assert reply.message == "Continued by UBOB."  # type: ignore[attr-defined]
    run = baking.finish(run_id)

    assert run.state == RunState.SUCCEEDED
    assert len(baking.provider.list_servers({"byoi:env": "staging"})) == 3


def test_cancelling_a_paused_canary_rolls_it_back(baking: World) -> None:
    roll_world(baking, 2)
    before = sorted(s.id for s in baking.provider.list_servers({"byoi:env": "staging"}))
    reply = baking.say("roll web --canary")
    run_id = reply.run.id  # type: ignore[attr-defined]
    baking.say(f"approve {run_id}", "UBOB")
    baking.runner.wait(30)

    baking.say(f"cancel {run_id}")
    run = baking.finish(run_id)

    assert run.state == RunState.CANCELLED
    assert run.servers[0].status == ServerStatus.CANCELLED
    assert "rolled back with its batch" in (run.servers[0].cleanup or "")
    after = sorted(s.id for s in baking.provider.list_servers({"byoi:env": "staging"}))
    assert after == before


def test_roll_with_nothing_to_replace_says_so(baking: World) -> None:
    baking.scale_and_approve("scale web 2")

    reply = baking.say("roll web")

    assert isinstance(reply, InfoReply)
    assert reply.message == "All 2 server(s) of web/staging already run web-base."


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crash_between_batches_resumes_and_completes(baking: World) -> None:
    roll_world(baking, 4)

    class Crash(BaseException):
        pass

    def crash(point: str) -> None:
        if point == "roll_batch_started:2":
            raise Crash

    baking.runner.checkpoint = crash
    reply = baking.say("roll web --batch 2")
    run_id = reply.run.id  # type: ignore[attr-defined]
    baking.say(f"approve {run_id}", "UBOB")
    baking.runner.wait(30)
    assert baking.store.run(run_id).state == RunState.RUNNING  # type: ignore[union-attr]

    baking.runner.checkpoint = lambda _: None
    orphans = reconcile(baking.store, baking.config, lambda _: baking.provider, baking.clock())
    assert resume(baking.store, baking.runner, baking.clock()) == [run_id]
    run = baking.finish(run_id)

    assert orphans == []
    assert run.state == RunState.SUCCEEDED
    live = baking.provider.list_servers({"byoi:env": "staging"})
    image = baking.provider.resolve_image("family:web")
    assert len(live) == 4 and {s.image_id for s in live} == {image.id}
    keys = [s.key for s in baking.provider.list_servers({})]
    assert len(keys) == len(set(keys))


def test_prune_deletes_unused_old_images_of_the_family_only(baking: World) -> None:
    provider = baking.provider
    for day in range(5):
        provider.create_image(
            f"web-{day}", IMAGE_FILES, family="web", created_at=START - timedelta(days=30 - day)
        )
    provider.create_image("api-1", IMAGE_FILES, family="api", created_at=START - timedelta(days=90))
    provider.create_image("hand-made", IMAGE_FILES, created_at=START - timedelta(days=90))
    baking.scale_and_approve("scale web 1 --image web-0")
    keep = {i.name for i in provider.list_images()} - {"web-1", "web-2", "web-3"}

    run = baking.scale_and_approve("images prune web --keep 2")

    assert run.kind == RunKind.PRUNE and run.state == RunState.SUCCEEDED, run.reason
    assert {i.name for i in provider.list_images()} == keep
    assert "web-0" in keep  # in use by a server
    assert {"api-1", "hand-made", "web-base", "web-4"} <= keep  # other families, the 2 newest
    again = baking.say("images prune web --keep 2")
    assert isinstance(again, InfoReply)


def test_the_scan_reports_live_fleet_drift_until_the_roll(baking: World) -> None:
    old_ruby(baking)
    baking.scale_and_approve("scale web 2")
    assert not any(
        o.staleness and any(f.kind == "fleet" for f in o.staleness.findings)
        for o in baking.service.views.scan(baking.clock()).observations
    )
    baking.scale_and_approve("refresh web")

    reply = baking.service.views.scan(baking.clock())

    staging = reply.observations[0]
    assert staging.staleness is not None
    (fleet,) = [f for f in staging.staleness.findings if f.kind == "fleet"]
    assert fleet.detail.startswith(
        "2 of 2 server(s) differ from the image: 2 run ruby_version 3.1.2 (image has 3.2.2)"
    )
    assert fleet.detail.endswith("→ roll")
    (alert,) = [a for a in reply.changes.new if a.finding == "fleet"]
    from bot.slack.blocks.alerts import ALERT_ROLL, alert_card

    actions = alert_card(alert, baking.clock())[-1]
    assert [e["action_id"] for e in actions["elements"]] == [ALERT_ROLL, "alert_snooze"]

    baking.scale_and_approve("roll web --batch 2")
    after = baking.service.views.scan(baking.clock())
    assert after.observations[0].findings == 0
    assert [a.finding for a in after.changes.resolved] == ["fleet"]


def test_a_server_of_the_run_in_flight_is_no_fleet_drift(baking: World) -> None:
    baking.scale_and_approve("scale web 1")
    fleet_findings: list[str] = []

    def scan_mid_run(point: str) -> None:  # the new server exists and is not probed yet
        if point.startswith("launched:"):
            for observation in baking.service.views.scan(baking.clock()).observations:
                found = observation.staleness.findings if observation.staleness else ()
                fleet_findings.extend(f.detail for f in found if f.kind == "fleet")

    baking.runner.checkpoint = scan_mid_run
    run = baking.scale_and_approve("scale web 2")

    assert run.state == RunState.SUCCEEDED
    assert fleet_findings == []
    assert baking.service.views.scan(baking.clock()).observations[0].findings == 0
