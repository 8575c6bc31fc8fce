"""moto in server mode for the AWS tests, and real AWS error responses injected by hooks."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "AWS_PROFILE",
        )
    }
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
    )
    os.environ.pop("AWS_PROFILE", None)
    yield url
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def aws(moto_server: str) -> Iterator[str]:
    """A fresh moto account for each test."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    yield moto_server


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def target_group(name: str = "web-lb") -> str:
    vpc = client("ec2").describe_vpcs()["Vpcs"][0]["VpcId"]
    groups = client("elbv2").create_target_group(
        Name=name, Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance"
    )
    return str(groups["TargetGroups"][0]["TargetGroupArn"])


def seed_ami(name: str, family: str, versions: dict[str, str]) -> str:
    """An AMI made the way an operator makes one: from a running instance, tagged for byoi."""
    ec2 = client("ec2")
    base = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    source = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")[
        "Instances"
    ][0]["InstanceId"]
    tags = [{"Key": "byoi:family", "Value": family}] + [
        {"Key": f"byoi:version:{k}", "Value": v} for k, v in versions.items()
    ]
    image = ec2.create_image(
        InstanceId=source, Name=name, TagSpecifications=[{"ResourceType": "image", "Tags": tags}]
    )
    ec2.terminate_instances(InstanceIds=[source])
    time.sleep(1.05)  # AMI creation dates have one-second resolution
    return str(image["ImageId"])


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def ec2_error(code: str, message: str, status: int) -> AWSResponse:
    """The XML error document EC2 sends, with its HTTP status."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>7c1a4e2b-0000-4000-8000-000000000000</RequestID></Response>"
    ).encode()
    return AWSResponse("https://ec2.amazonaws.com/", status, {}, _Raw(body))


def inject(
    boto_client: Any, operation: str, respond: Callable[[Any], AWSResponse | None]
) -> list[str]:
    """Answer ``operation`` with ``respond(request)`` when it returns a response; log bodies."""
    seen: list[str] = []
    service = boto_client.meta.service_model.service_name

    def hook(request: Any, **_: Any) -> AWSResponse | None:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        seen.append(body)
        return respond(request)

    boto_client.meta.events.register(f"before-send.{service}.{operation}", hook)
    return seen


def json_response(body: dict[str, Any], status: int = 200) -> AWSResponse:
    """A JSON-protocol answer (SSM speaks awsJson1_1)."""
    import json

    return AWSResponse(
        "https://ssm.amazonaws.com/",
        status,
        {"Content-Type": "application/x-amz-json-1.1"},
        _Raw(json.dumps(body).encode()),
    )


def elbv2_error(code: str, message: str, status: int = 400) -> AWSResponse:
    body = (
        '<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>7c1a4e2b-0000-4000-8000-000000000001</RequestId></ErrorResponse>"
    ).encode()
    return AWSResponse("https://elasticloadbalancing.amazonaws.com/", status, {}, _Raw(body))


def answer_probes(ssm: Any, output: Callable[[], str]) -> None:
    """moto runs no scripts: the probe commands reach moto, and their invocation answers with
    ``output()`` as the guest's probe script would print it."""
    import json

    probe_ids: set[str] = set()

    def sent(parsed: dict[str, Any], **_: Any) -> None:
        command = parsed.get("Command", {})
        if command.get("Comment") == "byoi probe":
            probe_ids.add(str(command["CommandId"]))

    def invocation(request: Any) -> AWSResponse | None:
        body = json.loads(request.body)
        if body["CommandId"] not in probe_ids:
            return None
        return json_response(
            {
                "CommandId": body["CommandId"],
                "InstanceId": body["InstanceId"],
                "Status": "Success",
                "ResponseCode": 0,
                "StandardOutputContent": output(),
                "StandardErrorContent": "",
            }
        )

    ssm.meta.events.register("after-call.ssm.SendCommand", sent)
    inject(ssm, "GetCommandInvocation", invocation)
