"""Whole runs on AWS, emulated by moto in server mode: scale up and down, refresh, faults."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import load_config
from pipeline.domain.models import RunState, ServerStatus
from pipeline.errors import UserError
from pipeline.services.replies import RunReply
from providers.aws import AwsProvider
from providers.base import TAG_APP, LaunchRequest, ServerSpec, Target
from tests.conftest import World, world_around
from tests.integration.moto_env import (
    REGION,
    answer_probes,
    client,
    ec2_error,
    inject,
    seed_ami,
    target_group,
)

PROBES = (
    'byoi-probe operating_system 0 ID=ubuntu\x1fVERSION_ID="22.04"\n'
    "byoi-probe ruby_version 0 ruby 3.2.2p53 (2023-03-30 revision e51014f9c0)\n"
)
OLD_PROBES = PROBES.replace("3.2.2p53", "3.1.2p20")

MANIFEST = """\
production:
  rails:
    configuration:
      ruby_version: 3.2.2
      operating_system: ubuntu2204
    server:
      unique_name: web
      vendor: aws
      region: us-east-1
      size: t3.small
      root_disk_size: 20
"""

CONFIG = """\
database: byoi.db
providers:
  aws:
    region: us-east-1
    poll_seconds: 1
    wait_seconds: 30
    max_attempts: {attempts}
    security_group_ids: [{group}]
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
    release: v2
    deploy_command: ./bin/deploy --release "$BYOI_RELEASE"
    health_command: curl -fsS localhost:3000/health
"""


def aws_world(root: Path, attempts: int = 3, channel: str | None = None) -> World:
    root.mkdir(parents=True, exist_ok=True)
    ec2 = client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    target_group("web-lb")
    seed_ami("web-base-v1", "web", {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"})
    (root / "manifest.yml").write_text(MANIFEST)
    text = CONFIG.format(attempts=attempts, group=group)
    if channel:
        text += f"    channel: {channel}\n"
    (root / "byoi.yml").write_text(text)

    provider = AwsProvider(load_config(root / "byoi.yml").providers["aws"])
    world = world_around(root, provider)
    world.probe_output = PROBES  # type: ignore[attr-defined]
    answer_probes(provider.ssm, lambda: world.probe_output)  # type: ignore[attr-defined]
    return world


def running(world: World) -> list[dict[str, Any]]:
    pages = client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:byoi:app", "Values": ["web"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return [i for r in pages["Reservations"] for i in r["Instances"]]


def healthy_targets() -> list[str]:
    elb = client("elbv2")
    arn = elb.describe_target_groups(Names=["web-lb"])["TargetGroups"][0]["TargetGroupArn"]
    return sorted(
        d["Target"]["Id"]
        for d in elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        if d["TargetHealth"]["State"] == "healthy"
    )


def decoded_env(commands: list[str]) -> dict[str, str]:
    env = {}
    for line in commands:
        match = re.match(r'export (\w+)="\$\(printf %s (\S*) \| base64 -d\)"', line)
        if match:
            env[match[1]] = base64.b64decode(match[2]).decode()
    return env


@pytest.fixture
def world(aws: str, tmp_path: Path) -> World:
    return aws_world(tmp_path / "w")


def test_scale_up_three_servers_from_a_tagged_ami(world: World) -> None:
    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.SUCCEEDED, [s.reason for s in run.servers]
    instances = running(world)
    assert len(instances) == 3
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["byoi:run"] == str(run.id) and tags["byoi:env"] == "production"
        assert tags["Name"] == tags["byoi:key"]
        assert instance["InstanceType"] == "t3.small"
    assert healthy_targets() == sorted(i["InstanceId"] for i in instances)
    commands = client("ssm").list_commands()["Commands"]
    assert len(commands) == 12  # scrub, deploy, probe and health on each server
    assert {c["DocumentName"] for c in commands} == {"AWS-RunShellScript"}
    deploys = [
        decoded_env(c["Parameters"]["commands"]) for c in commands if c["Comment"] == "byoi deploy"
    ]
    assert len(deploys) == 3
    assert deploys[0]["BYOI_APP"] == "web" and deploys[0]["BYOI_RELEASE"] == "v2"
    assert deploys[0]["BYOI_DEPLOY_COMMAND"] == './bin/deploy --release "$BYOI_RELEASE"'
    for instance in instances:  # what the probes measured, on the instance's tags
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["byoi:version:ruby_version"] == "3.2.2"
        assert tags["byoi:version:operating_system"] == "ubuntu2204"
    every_line = [line for c in commands for line in c["Parameters"]["commands"]]
    assert not any("bin/deploy" in line for line in every_line)  # only ever as data


def test_scale_down_deregisters_and_terminates(world: World) -> None:
    world.scale_and_approve("scale web 3")

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.SUCCEEDED
    (left,) = running(world)
    assert healthy_targets() == [left["InstanceId"]]


def test_refresh_bakes_a_tagged_ami_that_the_family_then_resolves_to(world: World) -> None:
    base = world.provider.resolve_image("family:web")
    world.clock.advance(seconds=2)

    run = world.scale_and_approve("refresh web")

    assert run.kind == "bake" and run.state == RunState.SUCCEEDED, run.reason
    image = world.provider.resolve_image("family:web")
    assert image.name.startswith("web-production-")
    assert dict(image.versions) == {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"}
    assert image.tags["byoi:baked-from"] == base.id
    builder = client("ec2").describe_instances(
        Filters=[{"Name": "tag:byoi:key", "Values": [run.servers[0].key]}]
    )["Reservations"][0]["Instances"][0]
    assert image.tags["byoi:source"] == builder["InstanceId"]
    assert builder["State"]["Name"] in ("shutting-down", "terminated")
    assert running(world) == []
    comments = [c["Comment"] for c in client("ssm").list_commands()["Commands"]]
    assert sorted(comments) == ["byoi bake", "byoi probe", "byoi scrub"]
    plan = world.say("scale web 2 --dry-run", expect=RunReply).plan
    assert plan.image.id == image.id


def test_a_bake_whose_probes_miss_the_declared_versions_is_not_published(world: World) -> None:
    base = world.provider.resolve_image("family:web")
    world.probe_output = OLD_PROBES  # type: ignore[attr-defined]

    run = world.scale_and_approve("refresh web")

    assert "kept unpublished: measured ≠ declared: ruby_version 3.1.2 ≠ 3.2.2" in (run.reason or "")
    assert world.provider.resolve_image("family:web").id == base.id
    made = [i for i in world.provider.list_images() if i.id != base.id]
    assert len(made) == 1 and made[0].family is None
    assert made[0].versions["ruby_version"] == "3.1.2"
    assert running(world) == []


def test_roll_four_servers_in_batches_of_two_with_a_failing_deploy_in_batch_two(
    world: World,
) -> None:
    import json

    from tests.integration.moto_env import json_response

    world.probe_output = OLD_PROBES  # type: ignore[attr-defined]
    world.scale_and_approve("scale web 4")
    old = sorted(i["InstanceId"] for i in running(world))
    world.probe_output = PROBES  # type: ignore[attr-defined]
    seed_ami("web-base-v2", "web", {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"})
    run = world.say("roll web --batch 2").run  # type: ignore[attr-defined]
    failing_key = run.servers[4].key
    failing: set[str] = set()

    def send(request: Any) -> Any:
        body = json.loads(request.body)
        env = decoded_env(body["Parameters"]["commands"])
        if body.get("Comment") == "byoi deploy" and env.get("BYOI_SERVER") == failing_key:
            failing.add("0b7e4f2a-1111-4222-8333-944455556666")
            return json_response({"Command": {"CommandId": "0b7e4f2a-1111-4222-8333-944455556666"}})
        return None

    def invocation(request: Any) -> Any:
        if json.loads(request.body)["CommandId"] in failing:
            return json_response(
                {"Status": "Failed", "ResponseCode": 3, "StandardErrorContent": "assets failed"}
            )
        return None

    inject(world.provider.ssm, "SendCommand", send)  # type: ignore[attr-defined]
    inject(world.provider.ssm, "GetCommandInvocation", invocation)  # type: ignore[attr-defined]
    sizes: list[int] = []
    world.runner.checkpoint = lambda _: sizes.append(len(healthy_targets()))

    world.say(f"approve {run.id}", "UBOB")
    run = world.finish(run.id)

    assert run.state == RunState.PARTIALLY_FAILED
    by_slot = {s.slot: s for s in run.servers}
    assert [by_slot[i].status for i in (1, 2, 3, 4)] == [ServerStatus.DONE] * 4
    assert by_slot[5].status == ServerStatus.FAILED
    assert by_slot[5].reason == "deploy exited 3: assets failed"
    assert by_slot[6].status == by_slot[8].status == ServerStatus.SKIPPED
    kept = {by_slot[6].provider_id, by_slot[8].provider_id}
    replaced = {by_slot[2].provider_id, by_slot[4].provider_id}
    live = {i["InstanceId"] for i in running(world)}
    assert kept | replaced == set(old)
    assert len(live) == 4 and kept <= live and not replaced & live
    assert set(healthy_targets()) == live
    assert min(sizes) >= 4 and max(sizes) <= 6


def test_prune_deregisters_old_amis_and_deletes_their_snapshots(world: World) -> None:
    for n in range(2):
        seed_ami(f"web-old-{n}", "web", {})
    seed_ami("api-base", "api", {})
    ec2 = client("ec2")
    before = {i["Name"]: i for i in ec2.describe_images(Owners=["self"])["Images"]}
    newest = {"web-old-1"}
    doomed = {"web-base-v1", "web-old-0"}
    snapshots = {
        m["Ebs"]["SnapshotId"]
        for name in doomed
        for m in before[name]["BlockDeviceMappings"]
        if "Ebs" in m
    }

    run = world.scale_and_approve("images prune web --keep 1")

    assert run.state == RunState.SUCCEEDED, run.reason
    after = {i["Name"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert after == newest | {"api-base"}  # another family's image is never a candidate
    assert snapshots
    left = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not snapshots & left


def test_request_limit_exceeded_is_retried_and_succeeds(world: World) -> None:
    failures = iter([ec2_error("RequestLimitExceeded", "Request limit exceeded.", 503)])
    seen = inject(world.provider.ec2, "RunInstances", lambda _: next(failures, None))

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.SUCCEEDED
    assert len(seen) == 2  # the throttled attempt and its retry
    assert len(running(world)) == 1


def test_insufficient_capacity_on_one_server_rolls_that_server_back(world: World) -> None:
    def capacity_for_slot_2(request: Any) -> Any:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        if re.search(r"ClientToken=byoi-\w+-\d+-2(&|$)", body):
            return ec2_error(
                "InsufficientInstanceCapacity",
                "We currently do not have sufficient t3.small capacity.",
                500,
            )
        return None

    inject(world.provider.ec2, "RunInstances", capacity_for_slot_2)

    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.PARTIALLY_FAILED
    failed = [s for s in run.servers if s.status == ServerStatus.FAILED]
    assert [s.slot for s in failed] == [2]
    assert (failed[0].reason or "").startswith("aws has no capacity for t3.small in us-east-1")
    raw = [e.detail for e in world.store.audit_events(run.id) if e.event == "provider_error"]
    assert len(raw) == 1 and "InsufficientInstanceCapacity" in raw[0]
    assert len(running(world)) == 2
    assert len(healthy_targets()) == 2


def test_a_repeated_launch_with_the_same_key_creates_no_second_instance(world: World) -> None:
    seen = inject(world.provider.ec2, "RunInstances", lambda _: None)
    image = world.provider.resolve_image("family:web")
    request = LaunchRequest(
        key="byoi-abcdef-7-1",
        name="byoi-abcdef-7-1",
        image=image,
        spec=ServerSpec(size="t3.small"),
        tags={TAG_APP: "web"},
    )

    first = world.provider.launch(request)
    again = world.provider.launch(request)

    assert first.id == again.id
    assert len(seen) == 1 and "ClientToken=byoi-abcdef-7-1" in seen[0]
    assert len(running(world)) == 1


def test_scale_up_refuses_an_unknown_family_clearly(world: World) -> None:
    reply = world.say("scale web 2 --image family:nothing", expect=UserError)

    assert reply.message == (
        "aws said: no available AMI tagged byoi:family=nothing. "
        "`images web` lists the images it has."
    )
    assert world.store.runs() == []


def test_region_comes_from_settings() -> None:
    provider = AwsProvider({"region": REGION})
    assert provider.ec2.meta.region_name == REGION


def test_a_failing_deploy_through_ssm_rolls_that_server_back(world: World) -> None:
    import json

    from tests.integration.moto_env import json_response

    failing: set[str] = set()

    def send(request: Any) -> Any:
        body = json.loads(request.body)
        env = decoded_env(body["Parameters"]["commands"])
        if body.get("Comment") == "byoi deploy" and env.get("BYOI_SERVER", "").endswith("-2"):
            failing.add("0b7e4f2a-1111-4222-8333-944455556666")
            return json_response({"Command": {"CommandId": "0b7e4f2a-1111-4222-8333-944455556666"}})
        return None

    def invocation(request: Any) -> Any:
        if json.loads(request.body)["CommandId"] in failing:
            return json_response(
                {
                    "CommandId": "0b7e4f2a-1111-4222-8333-944455556666",
                    "Status": "Failed",
                    "ResponseCode": 3,
                    "StandardOutputContent": "",
                    "StandardErrorContent": "migrations failed: db unreachable",
                }
            )
        return None

    inject(world.provider.ssm, "SendCommand", send)
    inject(world.provider.ssm, "GetCommandInvocation", invocation)

    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.PARTIALLY_FAILED
    (failed,) = [s for s in run.servers if s.status == ServerStatus.FAILED]
    assert failed.slot == 2
    assert failed.reason == "deploy exited 3: migrations failed: db unreachable"
    assert len(running(world)) == 2 and len(healthy_targets()) == 2


def test_a_target_registration_failure_deregisters_and_terminates(world: World) -> None:
    from tests.integration.moto_env import elbv2_error

    inject(
        world.provider.elbv2,
        "RegisterTargets",
        lambda _: elbv2_error("InvalidTarget", "The target is not in a running state."),
    )

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.FAILED
    assert "InvalidTarget" in (run.servers[0].reason or "")
    assert "rolled back" in (run.servers[0].cleanup or "")
    assert running(world) == [] and healthy_targets() == []


def test_an_instance_that_never_runs_times_out_and_is_terminated(world: World) -> None:
    from botocore.awsrequest import AWSResponse

    from tests.integration.moto_env import _Raw

    def pending(request: Any) -> Any:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        match = re.search(r"Filter\.1\.Name=instance-id&Filter\.1\.Value\.1=([\w-]+)", body)
        if not match:
            return None  # listings by tag still see the real state
        xml = (
            '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            "<requestId>1</requestId><reservationSet><item><reservationId>r-1</reservationId>"
            f"<instancesSet><item><instanceId>{match[1]}</instanceId><instanceState><code>0"
            "</code><name>pending</name></instanceState></item></instancesSet></item>"
            "</reservationSet></DescribeInstancesResponse>"
        ).encode()
        return AWSResponse("https://ec2.amazonaws.com/", 200, {}, _Raw(xml))

    inject(world.provider.ec2, "DescribeInstances", pending)
    world.provider.wait_seconds = 2

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.FAILED
    assert "wait for running: gave up waiting" in (run.servers[0].reason or "")
    assert "rolled back (terminated i-" in (run.servers[0].cleanup or "")
    assert running(world) == []


def test_register_and_deregister_repeated_after_a_restart_succeed(world: World) -> None:
    run = world.scale_and_approve("scale web 1")
    (server,) = world.provider.list_servers({"byoi:run": str(run.id)})
    target = Target("web-lb")

    world.provider.register(server, target)  # already registered: ELBv2 keeps one
    world.provider.deregister(server, target)
    world.provider.deregister(server, target)  # ELBv2 answers InvalidTarget: absent is fine

    assert world.provider.target_members(target) == []


def test_a_cohort_on_aws_waits_for_many_instances_per_call_and_one_refused_target_fails_alone(
    world: World,
) -> None:
    from tests.integration.moto_env import elbv2_error

    refused: list[str] = []

    def register(request: Any) -> Any:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        ids = re.findall(r"Targets\.member\.\d+\.Id=([\w-]+)", body)
        if not refused:
            refused.append(min(ids))  # EC2 would refuse, say, an instance not yet running
        if refused[0] in ids:
            return elbv2_error("InvalidTarget", "The target is not in a running state.")
        return None

    waits = inject(world.provider.ec2, "DescribeInstances", lambda _: None)
    registers = inject(world.provider.elbv2, "RegisterTargets", register)
    tags = inject(world.provider.ec2, "CreateTags", lambda _: None)

    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.PARTIALLY_FAILED
    (failed,) = [s for s in run.servers if s.status == ServerStatus.FAILED]
    assert "InvalidTarget" in (failed.reason or "") and failed.provider_id == refused[0]
    assert "rolled back (terminated" in (failed.cleanup or "")
    done = sorted(s.provider_id or "" for s in run.servers if s.status == ServerStatus.DONE)
    assert healthy_targets() == done and len(done) == 2
    by_id = [w for w in waits if "Name=instance-id" in w]
    assert any(w.count("Filter.1.Value.") == 3 for w in by_id)  # one listing waits for all three
    assert len(registers) == 4  # all three in one call, then each alone to find the refused one
    assert [t.count("ResourceId.") for t in tags] == [3]  # measured alike: tagged in one call
