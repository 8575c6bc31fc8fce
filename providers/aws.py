"""The AWS adapter: AMIs and EC2 instances, scripts through SSM Run Command, ELBv2 targets.

boto3 is imported only when this module is, which happens only when an app uses AWS.
Every botocore error is translated into the port's errors in ``aws_codec.translate``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from providers.aws_codec import image_from, server_from, ssm_commands, translate
from providers.base import (
    TAG_FAMILY,
    TAG_KEY,
    TAG_SOURCE,
    VERSION_TAG_PREFIX,
    AuthError,
    Image,
    LaunchRequest,
    NotFound,
    ProviderTimeout,
    RegistrationFailed,
    Script,
    ScriptResult,
    Server,
    Target,
    newest_usable,
)

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
SCRIPT_DONE = {"Success", "Failed", "Cancelled", "TimedOut", "Cancelling"}


class AwsProvider:
    name = "aws"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        # Explicit timeouts: botocore's defaults (60 s reads, times every retry) would keep a
        # call to an API that accepts connections but never answers going for minutes.
        config = BotoConfig(
            retries={"mode": "standard", "max_attempts": int(settings.get("max_attempts", 5))},
            region_name=settings.get("region"),
            connect_timeout=float(settings.get("connect_timeout", 5)),
            read_timeout=float(settings.get("read_timeout", 20)),
        )
        endpoint = settings.get("endpoint_url")
        try:
            session = boto3.session.Session(profile_name=settings.get("profile"))
            self.ec2 = session.client("ec2", config=config, endpoint_url=endpoint)
            self.ssm = session.client("ssm", config=config, endpoint_url=endpoint)
            self.elbv2 = session.client("elbv2", config=config, endpoint_url=endpoint)
        except NoRegionError:
            raise AuthError("no AWS region: set providers.aws.region or AWS_REGION") from None
        except BotoCoreError as exc:  # e.g. a profile that is not in ~/.aws/config
            raise AuthError(f"cannot set up the AWS client: {exc}") from None
        self.poll_seconds = float(settings.get("poll_seconds", 5))
        self.wait_seconds = float(settings.get("wait_seconds", 600))
        self._target_arns: dict[str, str] = {}

    def _waiter_config(self) -> dict[str, int]:
        delay = max(1, int(self.poll_seconds))
        return {"Delay": delay, "MaxAttempts": max(1, int(self.wait_seconds // delay))}

    # images -----------------------------------------------------------------------------

    def _describe_images(self, **kwargs: Any) -> list[Image]:
        with translate("describe images"):
            pages = self.ec2.get_paginator("describe_images").paginate(**kwargs)
            return [image_from(i) for page in pages for i in page.get("Images", [])]

    def list_images(self, family: str | None = None) -> list[Image]:
        filters = [{"Name": f"tag:{TAG_FAMILY}", "Values": [family]}] if family else []
        return self._describe_images(Owners=["self"], Filters=filters)

    def resolve_image(self, ref: str) -> Image:
        if ref.startswith("family:"):
            family = ref.removeprefix("family:")
            newest = newest_usable(self.list_images(family), datetime.now(UTC))
            if newest is None:
                raise NotFound(f"no available AMI tagged {TAG_FAMILY}={family}")
            return newest
        if ref.startswith("ami-"):
            found = self._describe_images(ImageIds=[ref])
        else:
            found = self._describe_images(
                Owners=["self"], Filters=[{"Name": "name", "Values": [ref]}]
            )
        if not found:
            raise NotFound(f"no AMI with id or name {ref!r}")
        return max(found, key=lambda i: i.created_at)

    def snapshot(
        self,
        server: Server,
        *,
        name: str,
        family: str | None,
        versions: Mapping[str, str],
        tags: Mapping[str, str] | None = None,
    ) -> Image:
        wanted = {f"{VERSION_TAG_PREFIX}{k}": v for k, v in versions.items()}
        wanted.update(tags or {})
        wanted[TAG_SOURCE] = server.id
        if family:
            wanted[TAG_FAMILY] = family
        # A resumed snapshot finds the image its first attempt made (names are unique).
        existing = self._describe_images(
            Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]
        )
        with translate("create image"):
            if existing:
                image_id = existing[0].id
            else:
                image_id = self.ec2.create_image(
                    InstanceId=server.id,
                    Name=name,
                    TagSpecifications=[
                        {
                            "ResourceType": "image",
                            "Tags": [{"Key": k, "Value": v} for k, v in wanted.items()],
                        }
                    ],
                )["ImageId"]
            self.ec2.get_waiter("image_available").wait(
                ImageIds=[image_id], WaiterConfig=self._waiter_config()
            )
        return self.resolve_image(image_id)

    def delete_image(self, image: Image) -> None:
        """Deregister the AMI, then delete the EBS snapshots behind it."""
        try:
            with translate(f"describe image {image.id}"):
                found = self.ec2.describe_images(ImageIds=[image.id])["Images"]
        except NotFound:
            return
        snapshots = [
            str(m["Ebs"]["SnapshotId"])
            for i in found
            for m in i.get("BlockDeviceMappings", [])
            if m.get("Ebs", {}).get("SnapshotId")
        ]
        with translate(f"deregister image {image.id}"):
            if found:
                self.ec2.deregister_image(ImageId=image.id)
            for snapshot_id in snapshots:
                self.ec2.delete_snapshot(SnapshotId=snapshot_id)

    # servers ----------------------------------------------------------------------------

    def list_servers(self, tags: Mapping[str, str]) -> list[Server]:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        filters.append({"Name": "instance-state-name", "Values": LIVE_STATES})
        with translate("describe instances"):
            pages = self.ec2.get_paginator("describe_instances").paginate(Filters=filters)
            return [
                server_from(i)
                for page in pages
                for r in page.get("Reservations", [])
                for i in r.get("Instances", [])
            ]

    def launch(self, request: LaunchRequest) -> Server:
        # ClientToken makes a retried call idempotent; the tag finds a server a crash hid.
        existing = self.list_servers({TAG_KEY: request.key})
        if existing:
            return self._wait_running(existing[0].id)
        with translate("run instances"):
            response = self.ec2.run_instances(**self._run_args(request))
        return self._wait_running(str(response["Instances"][0]["InstanceId"]))

    def _run_args(self, request: LaunchRequest) -> dict[str, Any]:
        spec = request.spec
        tags = [
            {"Key": k, "Value": v}
            for k, v in {**request.tags, TAG_KEY: request.key, "Name": request.name}.items()
        ]
        args: dict[str, Any] = {
            "ImageId": request.image.id,
            "InstanceType": spec.size or self.settings.get("instance_type", "t3.micro"),
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": request.key,
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
            "MetadataOptions": {"HttpTokens": "required"},
        }
        if spec.subnet:
            args["SubnetId"] = spec.subnet
        if spec.zone:
            args["Placement"] = {"AvailabilityZone": spec.zone}
        if self.settings.get("security_group_ids"):
            args["SecurityGroupIds"] = list(self.settings["security_group_ids"])
        if self.settings.get("iam_instance_profile"):
            args["IamInstanceProfile"] = {"Name": self.settings["iam_instance_profile"]}
        if self.settings.get("key_name"):
            args["KeyName"] = self.settings["key_name"]
        if spec.root_disk_gb:
            args["BlockDeviceMappings"] = self._root_disk(request.image.id, spec.root_disk_gb)
        return args

    def _root_disk(self, image_id: str, size_gb: int) -> list[dict[str, Any]]:
        """The image's root device, resized (gp3, deleted with the instance)."""
        with translate("describe image"):
            found = self.ec2.describe_images(ImageIds=[image_id])["Images"]
        device = found[0].get("RootDeviceName", "/dev/xvda") if found else "/dev/xvda"
        return [
            {
                "DeviceName": device,
                "Ebs": {"VolumeSize": size_gb, "VolumeType": "gp3", "DeleteOnTermination": True},
            }
        ]

    def _wait_running(self, instance_id: str) -> Server:
        with translate("wait for running"):
            self.ec2.get_waiter("instance_running").wait(
                InstanceIds=[instance_id], WaiterConfig=self._waiter_config()
            )
            reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return server_from(reservations[0]["Instances"][0])

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        with translate(f"{script.name} through SSM"):
            command = self.ssm.send_command(
                InstanceIds=[server.id],
                DocumentName="AWS-RunShellScript",
                Comment=f"byoi {script.name}"[:100],
                Parameters={
                    "commands": ssm_commands(script),
                    "executionTimeout": [str(int(script.timeout_seconds))],
                },
                TimeoutSeconds=max(30, int(script.timeout_seconds)),
            )["Command"]
            return self._wait_command(str(command["CommandId"]), server.id, script)

    def _wait_command(self, command_id: str, instance_id: str, script: Script) -> ScriptResult:
        deadline = time.monotonic() + script.timeout_seconds + 60
        while True:
            try:
                found = self.ssm.get_command_invocation(
                    CommandId=command_id, InstanceId=instance_id
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "InvocationDoesNotExist":
                    raise
                found = {"Status": "Pending"}
            if found["Status"] in SCRIPT_DONE:
                output = (found.get("StandardOutputContent") or "") + (
                    found.get("StandardErrorContent") or ""
                )
                code = int(found.get("ResponseCode", -1))
                if found["Status"] != "Success" and code == 0:
                    code = -1
                return ScriptResult(exit_code=code, output=output)
            if time.monotonic() > deadline:
                raise ProviderTimeout(
                    f"{script.name} did not finish within {script.timeout_seconds:g}s"
                )
            time.sleep(min(self.poll_seconds, 2.0))

    def tag_server(self, server: Server, tags: Mapping[str, str]) -> None:
        with translate(f"tag {server.id}"):
            self.ec2.create_tags(
                Resources=[server.id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )

    def terminate(self, server: Server) -> None:
        try:
            # Accepted is enough: EC2 finishes terminating on its own, and listings skip
            # shutting-down instances, so waiting would only slow rollbacks and scale-downs.
            with translate("terminate"):
                self.ec2.terminate_instances(InstanceIds=[server.id])

        except NotFound:
            return

    # targets ----------------------------------------------------------------------------

    def _target_arn(self, target: Target) -> str:
        if target.name.startswith("arn:"):
            return target.name
        if target.name not in self._target_arns:
            with translate(f"find target group {target.name}"):
                groups = self.elbv2.describe_target_groups(Names=[target.name])["TargetGroups"]
            self._target_arns[target.name] = str(groups[0]["TargetGroupArn"])
        return self._target_arns[target.name]

    def register(self, server: Server, target: Target) -> None:
        arn = self._target_arn(target)
        with translate(f"register with {target.name}"):
            self.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": server.id}])
        try:
            with translate(f"wait for {target.name} to report healthy"):
                self.elbv2.get_waiter("target_in_service").wait(
                    TargetGroupArn=arn,
                    Targets=[{"Id": server.id}],
                    WaiterConfig=self._waiter_config(),
                )
        except ProviderTimeout as exc:
            raise RegistrationFailed(exc.reason) from exc

    def deregister(self, server: Server, target: Target) -> None:
        arn = self._target_arn(target)
        try:
            with translate(f"deregister from {target.name}"):
                self.elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": server.id}])
        except RegistrationFailed:
            # InvalidTarget: not registered (say, deregistered before a crash). Absent is fine.
            if server.id not in self.target_members(target):
                return
            raise
        with translate(f"deregister from {target.name}"):
            # The target group's deregistration delay is the drain; wait for it to end.
            self.elbv2.get_waiter("target_deregistered").wait(
                TargetGroupArn=arn, Targets=[{"Id": server.id}], WaiterConfig=self._waiter_config()
            )
        if target.drain_seconds > 0:
            time.sleep(min(target.drain_seconds, self.wait_seconds))

    def target_members(self, target: Target) -> list[str]:
        with translate(f"read {target.name}"):
            health = self.elbv2.describe_target_health(TargetGroupArn=self._target_arn(target))
        return sorted(str(d["Target"]["Id"]) for d in health["TargetHealthDescriptions"])
