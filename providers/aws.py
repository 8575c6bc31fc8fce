"""The AWS adapter: AMIs and EC2 instances, scripts through SSM Run Command, ELBv2 targets.

boto3 is imported only when this module is, which happens only when an app uses AWS.
Every botocore error is translated into the port's errors in ``aws_codec.translate``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
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
    ProviderError,
    ProviderTimeout,
    RegistrationFailed,
    Script,
    ScriptResult,
    Server,
    ServerState,
    Target,
    each,
    newest_usable,
    outcome,
)
from providers.calls import Gate, chunks, pooled, rounds

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
SCRIPT_DONE = {"Success", "Failed", "Cancelled", "TimedOut", "Cancelling"}
ENDED = {ServerState.STOPPING, ServerState.STOPPED, ServerState.TERMINATED}
"""States an instance waited for to run does not come back from."""
FILTER_VALUES = 200  # EC2 takes at most 200 values per filter
TARGETS_PER_CALL = 500
TAGGED_PER_CALL = 1000
"""The most resources one CreateTags names (EC2's limit)."""


class AwsProvider:
    name = "aws"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self.gate = Gate()  # its API's requests in flight, whatever calls for many run at once
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
        return self._instances(filters, "describe instances")

    def launch(self, request: LaunchRequest) -> Server:
        return outcome(self.launch_all([request])[0])

    def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
        """Each request's instance, found by its key tag or run with the key as ClientToken (a
        retried call is idempotent), then one wait for all: a listing of up to 200 instances
        per call until each runs, not a waiter polling per instance."""
        found = self._by_key([r.key for r in requests])
        unique = list({r.key: r for r in requests}.values())  # a key is one instance
        started = dict(
            zip(
                [r.key for r in unique],
                pooled(lambda r: found.get(r.key) or self._run(r), unique, self.gate),
                strict=True,
            )
        )
        running = self._wait_running({i for i in started.values() if isinstance(i, str)})
        ids = [started[r.key] for r in requests]
        return [i if isinstance(i, ProviderError) else running[i] for i in ids]

    def _by_key(self, keys: Sequence[str]) -> dict[str, str]:
        """The live instances carrying these ``byoi:key`` tags: a crash may have hidden one."""
        found: dict[str, str] = {}
        for chunk in chunks(sorted(set(keys)), FILTER_VALUES):
            filters = [
                {"Name": f"tag:{TAG_KEY}", "Values": chunk},
                {"Name": "instance-state-name", "Values": LIVE_STATES},
            ]
            for instance in self._instances(filters, "describe instances"):
                found.setdefault(str(instance.tags.get(TAG_KEY)), instance.id)
        return found

    def _run(self, request: LaunchRequest) -> str:
        with translate("run instances"):
            response = self.ec2.run_instances(**self._run_args(request))
        return str(response["Instances"][0]["InstanceId"])

    def _instances(self, filters: list[dict[str, Any]], action: str) -> list[Server]:
        with translate(action):
            pages = self.ec2.get_paginator("describe_instances").paginate(Filters=filters)
            return [
                server_from(i)
                for page in pages
                for r in page.get("Reservations", [])
                for i in r.get("Instances", [])
            ]

    def _wait_running(self, ids: set[str]) -> dict[str, Server | ProviderError]:
        """Until each instance runs, or ends, or ``wait_seconds`` pass. By the instance-id
        filter: an instance EC2 does not list yet (it is eventually consistent) is waited for,
        not an error for all of them."""
        deadline = time.monotonic() + self.wait_seconds
        waiting, done = set(ids), dict[str, Server | ProviderError]()
        while True:
            for chunk in chunks(sorted(waiting), FILTER_VALUES):
                filters = [{"Name": "instance-id", "Values": chunk}]
                for server in self._instances(filters, "wait for running"):
                    if server.state == ServerState.RUNNING:
                        done[server.id] = server
                    elif server.state in ENDED:
                        done[server.id] = ProviderError(
                            f"wait for running: {server.id} is {server.state.value}"
                        )
            waiting -= done.keys()
            if not waiting:
                return done
            if time.monotonic() >= deadline:
                late = f"gave up waiting: not running after {self.wait_seconds:g}s"
                return {
                    **done,
                    **{i: ProviderTimeout(f"wait for running: {late}") for i in waiting},
                }
            time.sleep(self.poll_seconds)

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

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        return outcome(self.run_script_all([(server, script)])[0])

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        """Send every command, then ask after each until it ends: one loop for all of them,
        a few calls at a time, not a thread waiting per server."""
        sent = pooled(lambda job: self._send(*job), jobs, self.gate)

        def ask(n: int) -> ScriptResult | None:
            command = sent[n]
            if isinstance(command, ProviderError):
                raise command
            return self._invocation(command, *jobs[n])

        def late(n: int, waited: float) -> ProviderError | None:
            script = jobs[n][1]
            if waited <= script.timeout_seconds + 60:
                return None
            seconds = f"{script.timeout_seconds:g}s"
            return ProviderTimeout(f"{script.name} did not finish within {seconds}")

        return rounds(
            ask,
            range(len(jobs)),
            late=late,
            poll_seconds=min(self.poll_seconds, 2.0),
            gate=self.gate,
        )

    def _send(self, server: Server, script: Script) -> str:
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
        return str(command["CommandId"])

    def _invocation(self, command_id: str, server: Server, script: Script) -> ScriptResult | None:
        """The command's result on the server, or None while it runs."""
        with translate(f"{script.name} through SSM"):
            try:
                found = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=server.id)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "InvocationDoesNotExist":
                    raise
                return None
        if found["Status"] not in SCRIPT_DONE:
            return None
        output = (found.get("StandardOutputContent") or "") + (
            found.get("StandardErrorContent") or ""
        )
        code = int(found.get("ResponseCode", -1))
        if found["Status"] != "Success" and code == 0:
            code = -1
        return ScriptResult(exit_code=code, output=output)

    def tag_server(self, server: Server, tags: Mapping[str, str]) -> None:
        self._tag([server.id], tags)

    def tag_all(
        self, tagged: Sequence[tuple[Server, Mapping[str, str]]]
    ) -> list[ProviderError | None]:
        """One CreateTags for the servers given the same tags (servers of one image measure
        alike), 1,000 per call; if EC2 refuses the call, each of its servers is tagged alone,
        so that only the one refused fails."""
        alike: dict[tuple[tuple[str, str], ...], list[int]] = {}
        for index, (_, wanted) in enumerate(tagged):
            alike.setdefault(tuple(sorted(wanted.items())), []).append(index)
        refused: dict[int, ProviderError] = {}
        for pairs, indexes in alike.items():
            tags = dict(pairs)
            for chunk in chunks(indexes, TAGGED_PER_CALL) if tags else ():
                ids = [tagged[i][0].id for i in chunk]
                try:
                    self._tag(ids, tags)
                except ProviderError:  # which one EC2 refused: tag each alone
                    answers = self._tag_each(ids, tags)
                    refused.update({i: a for i, a in zip(chunk, answers, strict=True) if a})
        return [refused.get(index) for index in range(len(tagged))]

    def _tag_each(self, ids: list[str], tags: Mapping[str, str]) -> list[ProviderError | None]:
        return each(lambda i: self._tag([i], tags), ids)

    def _tag(self, ids: list[str], tags: Mapping[str, str]) -> None:
        with translate(f"tag {ids[0]}" if len(ids) == 1 else f"tag {len(ids)} servers"):
            self.ec2.create_tags(
                Resources=ids, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
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
        outcome(self.register_all([server], target)[0])

    def register_all(self, servers: Sequence[Server], target: Target) -> list[ProviderError | None]:
        """One RegisterTargets for many, then one health listing for all until each is in
        service (a target that is not, by ``wait_seconds``, failed its registration)."""
        arn = self._target_arn(target)
        ids = [s.id for s in servers]
        refused: dict[str, ProviderError] = {}
        for chunk in chunks(ids, TARGETS_PER_CALL):
            try:
                self._register(arn, target, chunk)
            except ProviderError as exc:
                if len(chunk) == 1:
                    refused[chunk[0]] = exc
                    continue
                # One target refused fails the call: find which, registering the rest.
                answers = each(lambda i: self._register(arn, target, [i]), chunk)
                refused.update({i: a for i, a in zip(chunk, answers, strict=True) if a})
        deadline = time.monotonic() + self.wait_seconds
        waiting = set(ids) - refused.keys()
        while True:
            with translate(f"wait for {target.name} to report healthy"):
                for chunk in chunks(sorted(waiting), TARGETS_PER_CALL):
                    health = self.elbv2.describe_target_health(
                        TargetGroupArn=arn, Targets=[{"Id": i} for i in chunk]
                    )["TargetHealthDescriptions"]
                    waiting -= {
                        str(d["Target"]["Id"])
                        for d in health
                        if d.get("TargetHealth", {}).get("State") == "healthy"
                    }
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_seconds)
        late = f"wait for {target.name} to report healthy: gave up waiting after"
        return [
            refused.get(i)
            or (RegistrationFailed(f"{late} {self.wait_seconds:g}s") if i in waiting else None)
            for i in ids
        ]

    def _register(self, arn: str, target: Target, ids: list[str]) -> None:
        with translate(f"register with {target.name}"):
            self.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": i} for i in ids])

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
