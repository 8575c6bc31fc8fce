"""Whole runs on AWS, emulated by moto in server mode: scale up and down, refresh, faults."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import load_config
from pipeline.domain.models import RunState, ServerStatus
from pipeline.services.replies import ErrorReply, RunReply
from providers.aws import AwsProvider
from providers.base import TAG_APP, LaunchRequest, ServerSpec, Target
from tests.conftest import World, world_around
from tests.integration.moto_env import REGION, client, ec2_error, inject, seed_ami, target_group

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
    return world_around(root, provider)


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
    assert len(commands) == 9  # scrub, deploy and health on each server
    assert {c["DocumentName"] for c in commands} == {"AWS-RunShellScript"}
    deploys = [
        decoded_env(c["Parameters"]["commands"]) for c in commands if c["Comment"] == "byoi deploy"
    ]
    assert len(deploys) == 3
    assert deploys[0]["BYOI_APP"] == "web" and deploys[0]["BYOI_RELEASE"] == "v2"
    assert deploys[0]["BYOI_DEPLOY_COMMAND"] == './bin/deploy --release "$BYOI_RELEASE"'
    every_line = [line for c in commands for line in c["Parameters"]["commands"]]
    assert not any("bin/deploy" in line for line in every_line)  # only ever as data


def test_scale_down_deregisters_and_terminates(world: World) -> None:
    world.scale_and_approve("scale web 3")

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.SUCCEEDED
    (left,) = running(world)
    assert healthy_targets() == [left["InstanceId"]]


def test_refresh_makes_a_tagged_ami_that_the_family_then_resolves_to(world: World) -> None:
    world.scale_and_approve("scale web 1")
    world.clock.advance(seconds=2)

    run = world.scale_and_approve("refresh web")

    assert run.state == RunState.SUCCEEDED
    image = world.provider.resolve_image("family:web")
    assert image.name.startswith("web-production-")
    assert dict(image.versions) == {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"}
    assert image.tags["byoi:source"] == running(world)[0]["InstanceId"]
    plan = world.say("scale web 2 --dry-run", expect=RunReply).plan
    assert plan.image.id == image.id


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
    reply = world.say("scale web 2 --image family:nothing", expect=ErrorReply)

    assert reply.message == "aws said: no available AMI tagged byoi:family=nothing"
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
        match = re.search(r"InstanceId\.1=([\w-]+)", body)
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
