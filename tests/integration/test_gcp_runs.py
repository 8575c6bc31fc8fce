"""Whole runs on GCP: the real google-cloud-compute clients against the Compute REST fake."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config.loader import load_config
from pipeline.domain.models import RunState, ServerStatus
from pipeline.errors import UserError
from pipeline.services.replies import RunReply
from providers.base import Target
from providers.codec import describe_versions
from providers.gcp import GcpProvider
from tests.conftest import World, world_around
from tests.fakes.compute import FakeCompute

ZONE = "europe-west1-b"
MANIFEST = """\
docker:
  configuration:
    version: '17.06.2-ce'
    ruby_version: 3.2.2
  servers:
  - server:
      unique_name: web
      size: n1-standard-1
      region: europe-west1-b
      vendor: googlecloud
      root_disk_size: 20
"""
CONFIG = """\
database: byoi.db
providers:
  gcp:
    project: byoi-test
    api_endpoint: {url}
    credentials: anonymous
    zone: us-central1-a
    poll_seconds: 0.05
    wait_seconds: 20
groups:
  ops: [UALICE, UBOB]
apps:
  web:
    manifest: manifest.yml
    image: family:web
    target: web-lb
    operators: ["@ops"]
    approvers: ["@ops"]
    drain_seconds: 0
    deploy_command: ./bin/deploy
    health_command: curl -fsS localhost:3000/health
"""


PROBES = (
    "byoi-probe docker_version 0 Docker version 17.06.2-ce, build cec0b72\n"
    "byoi-probe ruby_version 0 ruby 3.2.2p53 (2023-03-30 revision e51014f9c0)\n"
)
OLD_PROBES = PROBES.replace("3.2.2p53", "3.1.2p20")


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    server = FakeCompute().start()
    server.answer_step("probe", PROBES)  # what the guest's probes print (the fake runs none)
    server.add_group(ZONE, "web-lb")
    server.add_image(
        "web-base-v1",
        "web",
        {"byoi-v-docker_version": "17-06-2-ce"},
        "2026-11-20T09:00:00.000+00:00",
    )
    server.images["web-base-v1"]["description"] = describe_versions(
        {"docker_version": "17.06.2-ce", "ruby_version": "3.2.2"}
    )
    yield server
    server.stop()


@pytest.fixture
def world(fake: FakeCompute, tmp_path: Path) -> World:
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    (tmp_path / "byoi.yml").write_text(CONFIG.format(url=fake.url))
    provider = GcpProvider(load_config(tmp_path / "byoi.yml").providers["gcp"])
    return world_around(tmp_path, provider)


def test_scale_up_three_servers_with_labels_startup_script_and_group(
    world: World, fake: FakeCompute
) -> None:
    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.SUCCEEDED, [s.reason for s in run.servers]
    assert len(fake.instances) == 3
    for (zone, name), instance in fake.instances.items():
        assert zone == ZONE and instance["status"] == "RUNNING"
        assert instance["labels"]["byoi-app"] == "web"
        assert instance["labels"]["byoi-env"] == "default"
        assert instance["labels"]["byoi-key"] == name
        assert instance["machineType"].endswith("/machineTypes/n1-standard-1")
        items = {i["key"]: i["value"] for i in instance["metadata"]["items"]}
        assert items["enable-guest-attributes"] == "TRUE"
        assert items["byoi-steps"] == "scrub,deploy,probe,health"
        assert instance["labels"]["byoi-v-ruby_version"] == "3-2-2"  # as the guest reported
        assert "guest-attributes/byoi/" in items["startup-script"]
        assert "./bin/deploy" not in items["startup-script"]  # only ever base64 data
        disk = instance["disks"]
        assert disk[0]["boot"] is True
    members = fake.groups[(ZONE, "web-lb")]
    assert sorted(m.rsplit("/", 1)[-1] for m in members) == sorted(n for _, n in fake.instances)
    inserts = fake.calls("POST", r"/zones/[^/]+/instances$")
    assert len(inserts) == 3 and all(r.query.get("requestId") for r in inserts)
    # The three moved as one cohort: one call added them all to the group.
    (added,) = fake.calls("POST", r"/addInstances$")
    assert len(added.body["instances"]) == 3
    # Polled at the operations endpoint byoi's client was given (``ExtendedOperation.result()``
    # would poll Google's): each insert's operation, until done.
    polled = {r.path.rsplit("/", 1)[-1] for r in fake.calls("GET", r"/zones/.*/operations/")}
    assert {fake.by_request_id[r.query["requestId"]] for r in inserts} <= polled


def test_scale_down_removes_from_the_group_and_deletes(world: World, fake: FakeCompute) -> None:
    world.scale_and_approve("scale web 3")

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.SUCCEEDED
    assert len(fake.instances) == 1
    assert len(fake.groups[(ZONE, "web-lb")]) == 1


def test_refresh_bakes_on_a_builder_and_labels_the_image_with_what_was_measured(
    world: World, fake: FakeCompute
) -> None:
    run = world.scale_and_approve("refresh web")

    assert run.state == RunState.SUCCEEDED, run.reason
    image = world.provider.resolve_image("family:web")
    assert image.name.startswith("web-default-")
    body = fake.calls("POST", r"/global/images$")[0]
    assert body.body["labels"]["byoi-v-ruby_version"] == "3-2-2"
    assert body.body["labels"]["byoi-v-docker_version"] == "17-06-2-ce"
    assert body.body["labels"]["byoi-baked-from"] == "web-base-v1"
    assert body.body["family"] == "web"
    (builder,) = fake.calls("POST", r"/zones/[^/]+/instances$")
    assert body.body["sourceDisk"].endswith(f"/disks/{builder.body['name']}")
    items = {i["key"]: i["value"] for i in builder.body["metadata"]["items"]}
    assert items["byoi-steps"] == "bake,scrub,probe"
    assert "byoi-env" not in builder.body["labels"]  # a builder is no member of the fleet
    assert fake.instances == {}  # the builder was deleted
    assert body.query["forceCreate"] == "true"
    assert dict(image.versions) == {"docker_version": "17.06.2-ce", "ruby_version": "3.2.2"}
    plan = world.say("scale web 2 --dry-run", expect=RunReply).plan
    assert plan.image.id == image.id


def test_a_bake_whose_probes_miss_the_declared_versions_is_not_published(
    world: World, fake: FakeCompute
) -> None:
    fake.answer_step("probe", OLD_PROBES)

    run = world.scale_and_approve("refresh web")

    assert run.state == RunState.SUCCEEDED
    assert "kept unpublished" in (run.reason or "") and "ruby_version 3.1.2 ≠ 3.2.2" in (
        run.reason or ""
    )
    body = fake.calls("POST", r"/global/images$")[0]
    assert "family" not in body.body and body.body["labels"]["byoi-v-ruby_version"] == "3-1-2"
    assert world.provider.resolve_image("family:web").id == "web-base-v1"
    assert fake.instances == {}


def test_roll_four_servers_in_batches_of_two_with_a_failing_deploy_in_batch_two(
    world: World, fake: FakeCompute
) -> None:
    fake.answer_step("probe", OLD_PROBES)
    world.scale_and_approve("scale web 4")
    old = sorted(n for _, n in fake.instances)
    fake.answer_step("probe", PROBES)
    world.scale_and_approve("refresh web")
    reply = world.say("roll web --batch 2")
    run = reply.run  # type: ignore[attr-defined]
    fake.fail_step(run.servers[4].key, "deploy", 3, "assets failed")
    sizes: list[int] = []
    world.runner.checkpoint = lambda _: sizes.append(len(fake.groups[(ZONE, "web-lb")]))

    world.say(f"approve {run.id}", "UBOB")
    run = world.finish(run.id)

    assert run.state == RunState.PARTIALLY_FAILED
    by_slot = {s.slot: s for s in run.servers}
    assert [by_slot[i].status for i in (1, 2, 3, 4)] == [ServerStatus.DONE] * 4
    assert by_slot[5].status == ServerStatus.FAILED and "assets failed" in (by_slot[5].reason or "")
    assert by_slot[6].status == by_slot[8].status == ServerStatus.SKIPPED
    names = sorted(n for _, n in fake.instances)
    kept = {str(by_slot[i].provider_id).split("/")[-1] for i in (6, 8)}
    replaced = {str(by_slot[i].provider_id).split("/")[-1] for i in (2, 4)}
    assert len(names) == 4 and kept <= set(names) and not replaced & set(names)
    assert kept | replaced == set(old)
    members = sorted(m.rsplit("/", 1)[-1] for m in fake.groups[(ZONE, "web-lb")])
    assert members == names
    assert min(sizes) >= 4 and max(sizes) <= 6


def test_prune_deletes_old_family_images_through_the_operations_client(
    world: World, fake: FakeCompute
) -> None:
    for day in range(1, 5):
        fake.add_image(f"web-old-{day}", "web", {}, f"2026-10-0{day}T09:00:00.000+00:00")
    fake.add_image("other-family", "api", {}, "2026-01-01T09:00:00.000+00:00")

    run = world.scale_and_approve("images prune web --keep 2")

    assert run.state == RunState.SUCCEEDED, run.reason
    assert sorted(fake.images) == ["other-family", "web-base-v1", "web-old-4"]
    deletes = fake.calls("DELETE", r"/global/images/")
    assert len(deletes) == 3 and all(r.query.get("requestId") for r in deletes)
    assert fake.calls("POST", r"/global/operations/[^/]+/wait")


def fake_name(fake: FakeCompute) -> str:
    return next(iter(fake.instances))[1]


def test_429_and_503_are_retried_with_the_same_request_id(world: World, fake: FakeCompute) -> None:
    fake.fail_http("POST", r"/zones/[^/]+/instances$", 429)
    fake.fail_http("POST", r"/zones/[^/]+/instances$", 503)

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.SUCCEEDED
    inserts = fake.calls("POST", r"/zones/[^/]+/instances$")
    assert len(inserts) == 3
    assert len({r.query["requestId"] for r in inserts}) == 1
    assert len(fake.instances) == 1


def test_an_exhausted_zone_rolls_that_server_back(world: World, fake: FakeCompute) -> None:
    fake.fail_operation(
        "insert",
        r"/instances/byoi-\w+-\d+-2$",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "The zone does not have enough resources available.",
    )

    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.PARTIALLY_FAILED
    (failed,) = [s for s in run.servers if s.status == ServerStatus.FAILED]
    assert failed.slot == 2 and (failed.reason or "").startswith("gcp has no capacity for")
    raw = [e.detail for e in world.store.audit_events(run.id) if e.event == "provider_error"]
    assert len(raw) == 1 and "ZONE_RESOURCE_POOL_EXHAUSTED" in raw[0]
    assert len(fake.instances) == 2
    assert len(fake.groups[(ZONE, "web-lb")]) == 2


def test_quota_exceeded_is_a_limit_and_nothing_is_left_behind(
    world: World, fake: FakeCompute
) -> None:
    fake.fail_operation("insert", r"/instances/", "QUOTA_EXCEEDED", "Quota 'CPUS' exceeded.")

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.FAILED
    assert (run.servers[0].reason or "").startswith("gcp refused: an account quota or limit")
    raw = [e.detail for e in world.store.audit_events(run.id) if e.event == "provider_error"]
    assert len(raw) == 1 and "QUOTA_EXCEEDED" in raw[0]
    assert fake.instances == {}


def test_a_failing_deploy_step_is_reported_and_rolled_back(world: World, fake: FakeCompute) -> None:
    key = f"byoi-{world.store.install_id}-1-2"
    fake.fail_step(key, "deploy", 3, "migrations failed: db unreachable")

    run = world.scale_and_approve("scale web 2")

    assert run.state == RunState.PARTIALLY_FAILED
    (failed,) = [s for s in run.servers if s.status == ServerStatus.FAILED]
    assert failed.key == key
    assert "deploy exited 3: migrations failed" in (failed.reason or "")
    assert [n for _, n in fake.instances] == [f"byoi-{world.store.install_id}-1-1"]


def test_forty_servers_at_once_wait_on_a_few_threads_not_one_each(
    fake: FakeCompute, tmp_path: Path
) -> None:
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    config = CONFIG.format(url=fake.url).replace(
        "    drain_seconds: 0\n",
        "    drain_seconds: 0\n    max_servers: 40\n    max_parallel: 40\n",
    )
    (tmp_path / "byoi.yml").write_text(config)
    world = world_around(tmp_path, GcpProvider(load_config(tmp_path / "byoi.yml").providers["gcp"]))
    failing = f"byoi-{world.store.install_id}-1-7"
    fake.fail_step(failing, "deploy", 3, "migrations failed")
    before, peak, done = threading.active_count(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], threading.active_count())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run = world.scale_and_approve("scale web 40")
    finally:
        done.set()
        sampler.join()

    assert run.state == RunState.PARTIALLY_FAILED
    (failed,) = [s for s in run.servers if s.status == ServerStatus.FAILED]
    assert failed.key == failing and "deploy exited 3" in (failed.reason or "")
    assert len(fake.instances) == 39 and (ZONE, failing) not in fake.instances
    (added,) = fake.calls("POST", r"/addInstances$")  # one call for the whole cohort
    assert len(added.body["instances"]) == 39
    # The run's thread, 8 at a time for the calls, the fake's answers and a rollback: a thread
    # per server would have been 40 more.
    assert peak[0] - before <= 24, peak[0] - before


def test_obsolete_images_are_refused_and_deprecated_ones_skipped_by_family(
    world: World, fake: FakeCompute
) -> None:
    fake.images["web-base-v1"]["deprecated"] = {"state": "OBSOLETE"}

    by_family = world.say("scale web 1", expect=UserError)
    by_name = world.say("scale web 1 --image web-base-v1", expect=UserError)

    assert "family web has no usable image" in by_family.message
    assert "image is obsolete" in by_name.message
    assert fake.instances == {}


def test_an_instance_that_never_runs_times_out_and_is_deleted(
    world: World, fake: FakeCompute
) -> None:
    fake.stuck.add(f"byoi-{world.store.install_id}-1-1")
    world.provider.wait_seconds = 1

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.FAILED
    assert "is still PROVISIONING" in (run.servers[0].reason or "")
    assert fake.instances == {}


def test_a_register_repeated_after_a_restart_counts_an_existing_member_as_success(
    world: World, fake: FakeCompute
) -> None:
    run = world.scale_and_approve("scale web 1")
    (server,) = world.provider.list_servers({"byoi:run": str(run.id)})
    operations = len(fake.operations)
    fake.forget_request_ids()  # the restart came long after the first add

    world.provider.register(server, Target("web-lb"))  # the group lists it already

    assert len(fake.calls("POST", r"/addInstances$")) == 1  # nothing sent again
    assert len(fake.operations) == operations
    assert len(fake.groups[(ZONE, "web-lb")]) == 1

    world.provider.deregister(server, Target("web-lb"))
    world.provider.deregister(server, Target("web-lb"))  # a removal repeated: absent is fine

    assert fake.groups[(ZONE, "web-lb")] == []
    assert len(fake.calls("POST", r"/removeInstances$")) == 1


def test_late_answers_are_asked_again_under_the_same_request_id(
    fake: FakeCompute, tmp_path: Path
) -> None:
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    config = CONFIG.format(url=fake.url).replace(
        "    wait_seconds: 20\n", "    wait_seconds: 20\n    read_timeout: 1\n"
    )
    (tmp_path / "byoi.yml").write_text(config)
    world = world_around(tmp_path, GcpProvider(load_config(tmp_path / "byoi.yml").providers["gcp"]))
    fake.answer_late("POST", r"/zones/[^/]+/instances$", 3)  # an insert
    fake.answer_late("GET", r"/getGuestAttributes$", 3)  # a step's report

    run = world.scale_and_approve("scale web 2")

    assert run.state == RunState.SUCCEEDED, [s.reason for s in run.servers]
    inserts = fake.calls("POST", r"/zones/[^/]+/instances$")
    assert len(inserts) == 3 and len({r.query["requestId"] for r in inserts}) == 2
    assert len(fake.instances) == 2


def test_a_group_add_for_many_refused_for_one_member_still_adds_the_others(
    world: World, fake: FakeCompute
) -> None:
    run = world.scale_and_approve("scale web 3")
    servers = world.provider.list_servers({"byoi:run": str(run.id)})
    group = fake.groups[(ZONE, "web-lb")]
    group[1:] = []  # two left the group behind byoi's back; one is still in it
    fake.forget_request_ids()
    fake.fail_http("POST", r"/listInstances$", 403)  # and the listing cannot tell which

    outcomes = world.provider.register_all(servers, Target("web-lb"))

    # The call for all three was refused (memberAlreadyExists) and added nothing: each alone.
    assert outcomes == [None, None, None]
    assert len(group) == len(set(group)) == 3


def test_a_launch_resumed_after_a_crash_waits_on_the_first_insert(
    world: World, fake: FakeCompute
) -> None:
    from google.cloud import compute_v1

    from providers.base import LaunchRequest, ServerSpec, ServerState
    from providers.gcp_requests import instance_resource

    provider = world.provider
    zone = provider.zone
    key = f"byoi-{world.store.install_id}-1-1"
    request = LaunchRequest(key, key, provider.resolve_image("family:web"), ServerSpec(), {})
    # The first process sent the insert and died before waiting on it: GCE starts the
    # instance on its own; the fake, only as its operation is polled.
    provider.instances.insert_unary(
        compute_v1.InsertInstanceRequest(
            project=provider.project,
            zone=zone,
            instance_resource=instance_resource(request, zone, provider.project, provider.settings),
            request_id=provider._request_id(key, "insert"),
        )
    )
    assert fake.instances[(zone, key)]["status"] == "PROVISIONING"
    provider.wait_seconds = 5

    server = provider.launch(request)

    assert server.state == ServerState.RUNNING and list(fake.instances) == [(zone, key)]
    inserts = fake.calls("POST", r"/zones/[^/]+/instances$")
    assert len({r.query["requestId"] for r in inserts}) == 1  # the same insert, asked again
