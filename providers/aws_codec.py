"""AWS answers to the port's values and errors, and the SSM command lines that run a script.

Kept apart from the adapter so it can be read and tested without clients or a network.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from providers.base import (
    TAG_FAMILY,
    VERSION_TAG_PREFIX,
    AuthError,
    Capacity,
    Image,
    ImageState,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    ProviderError,
    ProviderTimeout,
    RegistrationFailed,
    Script,
    Server,
    ServerState,
    Throttled,
)
from providers.codec import b64, utc_time

ERRORS: dict[str, type[ProviderError]] = {
    "Throttling": Throttled,
    "ThrottlingException": Throttled,
    "RequestLimitExceeded": Throttled,
    "TooManyRequestsException": Throttled,
    "InsufficientInstanceCapacity": Capacity,
    "InsufficientHostCapacity": Capacity,
    "InsufficientReservedInstanceCapacity": Capacity,
    "InsufficientCapacityOnOutpost": Capacity,
    "InstanceLimitExceeded": LimitExceeded,
    "VcpuLimitExceeded": LimitExceeded,
    "LimitExceeded": LimitExceeded,
    "ResourceLimitExceeded": LimitExceeded,
    "TooManyTargets": LimitExceeded,
    "AuthFailure": AuthError,
    "UnauthorizedOperation": AuthError,
    "AccessDenied": AuthError,
    "AccessDeniedException": AuthError,
    "ExpiredToken": AuthError,
    "InvalidClientTokenId": AuthError,
    "UnrecognizedClientException": AuthError,
    "SignatureDoesNotMatch": AuthError,
    "InvalidAMIID.NotFound": NotFound,
    "InvalidAMIID.Unavailable": NotFound,
    "InvalidInstanceID.NotFound": NotFound,
    "TargetGroupNotFound": NotFound,
    "InvalidTarget": RegistrationFailed,
    "InvalidInstanceId": NotFound,
}
IMAGE_STATES = {
    "available": ImageState.READY,
    "pending": ImageState.PENDING,
    "failed": ImageState.FAILED,
    "error": ImageState.FAILED,
    "invalid": ImageState.FAILED,
    "deregistered": ImageState.DELETED,
    "disabled": ImageState.OBSOLETE,
}
SERVER_STATES = {
    "pending": ServerState.PENDING,
    "running": ServerState.RUNNING,
    "stopping": ServerState.STOPPING,
    "stopped": ServerState.STOPPED,
    "shutting-down": ServerState.TERMINATED,
    "terminated": ServerState.TERMINATED,
}


@contextmanager
def translate(action: str) -> Iterator[None]:
    """The one place botocore errors become the port's errors."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")) or code
        kind = ERRORS.get(code)
        if kind is None and code.endswith(".NotFound"):
            kind = NotFound
        if kind is None and code.startswith(("InvalidParameter", "Invalid", "Unsupported")):
            kind = InvalidRequest
        raise (kind or ProviderError)(f"{action}: {code}: {message}") from exc
    except WaiterError as exc:
        raise ProviderTimeout(f"{action}: gave up waiting ({exc})") from exc
    except BotoCoreError as exc:
        raise ProviderError(f"{action}: {exc}") from exc


def _tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def _time(value: str | None) -> datetime | None:
    return utc_time(value) if value else None


def image_from(data: Mapping[str, Any]) -> Image:
    tags = _tags(data.get("Tags"))
    versions = {
        k.removeprefix(VERSION_TAG_PREFIX): v
        for k, v in tags.items()
        if k.startswith(VERSION_TAG_PREFIX)
    }
    return Image(
        id=str(data["ImageId"]),
        name=str(data.get("Name") or data["ImageId"]),
        created_at=_time(data.get("CreationDate")) or datetime.min.replace(tzinfo=UTC),
        state=IMAGE_STATES.get(str(data.get("State")), ImageState.UNKNOWN),
        family=tags.get(TAG_FAMILY),
        versions=versions,
        tags=tags,
        deprecated_at=_time(data.get("DeprecationTime")),
    )


def server_from(data: Mapping[str, Any]) -> Server:
    tags = _tags(data.get("Tags"))
    launched = data.get("LaunchTime")
    created = launched if isinstance(launched, datetime) else _time(str(launched or ""))
    return Server(
        id=str(data["InstanceId"]),
        name=tags.get("Name", str(data["InstanceId"])),
        image_id=str(data.get("ImageId", "")),
        state=SERVER_STATES.get(str(data.get("State", {}).get("Name")), ServerState.UNKNOWN),
        created_at=created or datetime.min.replace(tzinfo=UTC),
        tags=tags,
        address=data.get("PrivateIpAddress"),
    )


def ssm_commands(script: Script) -> list[str]:
    """Shell lines for AWS-RunShellScript that carry parameters as environment variables.

    Values and the script travel base64-encoded, so no user text is ever parsed as shell.
    """
    lines = ["set -e"]
    for name, value in sorted(script.env.items()):
        if not name.isidentifier() or not name.isascii():
            raise InvalidRequest(f"bad environment variable name {name!r}")
        lines.append(f'export {name}="$(printf %s {b64(value)} | base64 -d)"')
    lines.append(f'exec bash -c "$(printf %s {b64(script.body)} | base64 -d)"')
    return lines
