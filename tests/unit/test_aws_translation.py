"""The AWS adapter's pure parts: error translation, AMI/instance mapping, SSM command lines."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError, WaiterError

from providers import base
from providers.aws_codec import image_from, server_from, ssm_commands, translate


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "boom"}}, "RunInstances")


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("RequestLimitExceeded", base.Throttled),
        ("Throttling", base.Throttled),
        ("InsufficientInstanceCapacity", base.Capacity),
        ("InstanceLimitExceeded", base.LimitExceeded),
        ("VcpuLimitExceeded", base.LimitExceeded),
        ("UnauthorizedOperation", base.AuthError),
        ("AuthFailure", base.AuthError),
        ("ExpiredToken", base.AuthError),
        ("InvalidAMIID.NotFound", base.NotFound),
        ("InvalidSubnetID.NotFound", base.NotFound),
        ("TargetGroupNotFound", base.NotFound),
        ("InvalidParameterValue", base.InvalidRequest),
        ("SomethingNew", base.ProviderError),
    ],
)
def test_client_errors_become_the_ports_errors(code: str, kind: type[Exception]) -> None:
    with pytest.raises(kind) as caught, translate("launch"):
        raise client_error(code)

    assert type(caught.value) is kind
    assert str(caught.value) == f"launch: {code}: boom"
    assert isinstance(caught.value.__cause__, ClientError)


def test_waiter_errors_become_timeouts() -> None:
    with pytest.raises(base.ProviderTimeout), translate("wait"):
        raise WaiterError("InstanceRunning", "Max attempts exceeded", {})


def test_amis_map_to_images_with_versions_family_and_deprecation() -> None:
    image = image_from(
        {
            "ImageId": "ami-1",
            "Name": "web-1",
            "State": "available",
            "CreationDate": "2026-10-01T12:00:00.000Z",
            "DeprecationTime": "2026-12-01T00:00:00.000Z",
            "Tags": [
                {"Key": "byoi:family", "Value": "web"},
                {"Key": "byoi:version:ruby_version", "Value": "3.2.2"},
                {"Key": "Owner", "Value": "platform"},
            ],
        }
    )

    assert image.created_at == datetime(2026, 10, 1, 12, tzinfo=UTC)
    assert image.deprecated_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert image.family == "web"
    assert dict(image.versions) == {"ruby_version": "3.2.2"}
    assert image.state == base.ImageState.READY
    assert image_from({"ImageId": "ami-2", "State": "weird"}).state == base.ImageState.UNKNOWN
    assert image_from({"ImageId": "ami-3", "State": "disabled"}).state == base.ImageState.OBSOLETE


def test_instance_states_map_through_a_table_with_an_unknown_fallback() -> None:
    assert server_from({"InstanceId": "i-1", "State": {"Name": "running"}}).state == (
        base.ServerState.RUNNING
    )
    assert server_from({"InstanceId": "i-1", "State": {"Name": "shutting-down"}}).state == (
        base.ServerState.TERMINATED
    )
    assert server_from({"InstanceId": "i-1", "State": {"Name": "??"}}).state == (
        base.ServerState.UNKNOWN
    )


def test_the_ssm_lines_run_the_script_with_its_parameters_as_environment() -> None:
    script = base.Script(
        "deploy",
        'echo "app=$BYOI_APP rel=$BYOI_RELEASE"; test -z "$PWNED"',
        {"BYOI_APP": "web", "BYOI_RELEASE": "$(touch /tmp/pwned) 'x\" ; PWNED=1"},
    )

    lines = ssm_commands(script)
    done = subprocess.run(
        ["bash", "-c", "\n".join(lines)], capture_output=True, text=True, timeout=30, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == "app=web rel=$(touch /tmp/pwned) 'x\" ; PWNED=1\n"
    assert not any("touch" in line for line in lines)


def test_the_ssm_lines_report_the_script_exit_code() -> None:
    lines = ssm_commands(base.Script("scrub", "echo bad >&2; exit 9"))

    done = subprocess.run(
        ["bash", "-c", "\n".join(lines)], capture_output=True, text=True, timeout=30, check=False
    )

    assert done.returncode == 9 and "bad" in done.stderr


def test_environment_names_are_checked() -> None:
    with pytest.raises(base.InvalidRequest):
        ssm_commands(base.Script("x", "true", {"A;B": "1"}))
