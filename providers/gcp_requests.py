"""What the GCP adapter sends to Compute Engine and how it takes the answer: the instance and
image resources it creates, the retry of transient answers, the one translation of
google.api_core errors into the port's, and the answers that mean a change already holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.cloud import compute_v1

from providers.base import (
    TAG_KEY,
    TAG_SOURCE,
    AlreadyExists,
    AuthError,
    Capacity,
    InvalidRequest,
    LaunchRequest,
    LimitExceeded,
    NotFound,
    ProviderError,
    ProviderTimeout,
    ServerSpec,
    Throttled,
)
from providers.codec import describe_versions
from providers.gcp_codec import LABELS, label_value, startup_script, version_labels

OPERATION_ERRORS: dict[str, type[ProviderError]] = {
    "ZONE_RESOURCE_POOL_EXHAUSTED": Capacity,
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS": Capacity,
    "RESOURCE_POOL_EXHAUSTED": Capacity,
    "QUOTA_EXCEEDED": LimitExceeded,
    "RESOURCE_NOT_FOUND": NotFound,
    "RATE_LIMIT_EXCEEDED": Throttled,
}
# operations.wait answers within two minutes on Compute Engine: its call may take that long.
WAIT_CALL_SECONDS = 150.0
# Only the call is retried, with the same requestId, so a retry never creates twice; a dropped
# connection too (every change byoi asks for carries a requestId). A call that waited out its
# read timeout is not: an API that accepts connections but never answers must not hold a step.
TRANSIENT = Retry(
    predicate=if_exception_type(
        gexc.TooManyRequests,
        gexc.ServiceUnavailable,
        gexc.InternalServerError,
        gexc.BadGateway,
        requests.ConnectionError,
    ),
    initial=0.2,
    maximum=5.0,
    multiplier=2.0,
    timeout=60.0,
)


# Answers that mean the membership change already holds (e.g. the add went through before a
# crash and its requestId has since been forgotten): success, not an error.
ALREADY_MEMBER = ("memberAlreadyExists", "is already a member of")
NOT_MEMBER = ("memberNotFound", "is not a member of")


@contextmanager
def already_done(answers: tuple[str, ...]) -> Iterator[list[bool]]:
    """Yields a flag list that is [True] when the API said the change already holds."""
    held: list[bool] = []
    try:
        yield held
    except gexc.BadRequest as exc:
        said = f"{exc.message} {exc.errors}"
        if not any(answer in said for answer in answers):
            raise
        held.append(True)


@contextmanager
def translate(action: str) -> Iterator[None]:
    """The one place google.api_core errors become the port's errors."""
    try:
        yield
    except gexc.NotFound as exc:
        raise NotFound(f"{action}: {exc.message}") from exc
    except gexc.Conflict as exc:
        raise AlreadyExists(f"{action}: {exc}") from exc  # the same text as any other error
    except gexc.TooManyRequests as exc:
        raise Throttled(f"{action}: {exc.message}") from exc
    except (gexc.Unauthorized, gexc.Forbidden) as exc:
        raise AuthError(f"{action}: {exc.message}") from exc
    except gexc.BadRequest as exc:
        raise InvalidRequest(f"{action}: {exc.message}") from exc
    except gexc.RetryError as exc:
        if isinstance(exc.cause, requests.Timeout):
            raise ProviderTimeout(f"{action}: no answer in time ({exc.cause})") from exc
        raise Throttled(f"{action}: gave up retrying: {exc.cause}") from exc
    except gexc.GoogleAPIError as exc:
        raise ProviderError(f"{action}: {exc}") from exc
    except requests.Timeout as exc:
        raise ProviderTimeout(f"{action}: no answer in time ({exc})") from exc
    except requests.RequestException as exc:
        raise ProviderError(f"{action}: {exc}") from exc


def _labels(tags: Mapping[str, str]) -> dict[str, str]:
    return {LABELS.get(k, label_value(k)): label_value(v) for k, v in tags.items()}


def image_resource(
    name: str,
    source_disk: str,
    source: str,
    family: str | None,
    versions: Mapping[str, str],
    tags: Mapping[str, str],
) -> Any:
    """An image of ``source_disk`` (of the instance ``source``): exact versions in its
    description, their label form and the provenance ``tags`` as labels."""
    labels = {**version_labels(versions), **_labels(tags)}
    labels[label_value(TAG_SOURCE)] = label_value(source)
    return compute_v1.Image(
        name=name,
        source_disk=source_disk,
        family=family or None,
        labels=labels,
        description=describe_versions(versions),
    )


def instance_resource(
    request: LaunchRequest, zone: str, project: str, settings: Mapping[str, Any]
) -> Any:
    """The instance a launch creates: its boot disk from the image, its network, the startup
    script that runs its steps, and its labels (the key among them)."""
    spec = request.spec
    labels = _labels(request.tags)
    labels[LABELS[TAG_KEY]] = request.key
    labels["byoi-image"] = label_value(request.image.id)
    instance = compute_v1.Instance(
        name=request.key,
        machine_type=f"zones/{zone}/machineTypes/"
        f"{spec.size or settings.get('machine_type', 'e2-small')}",
        labels=labels,
        disks=[_boot_disk(f"projects/{project}/global/images/{request.image.id}", spec)],
        network_interfaces=[
            compute_v1.NetworkInterface(
                network=settings.get("network", "global/networks/default"),
                subnetwork=spec.subnet or settings.get("subnetwork") or None,
            )
        ],
        metadata=_metadata(request),
    )
    if settings.get("service_account"):
        instance.service_accounts = [
            compute_v1.ServiceAccount(
                email=settings["service_account"],
                scopes=["https://www.googleapis.com/auth/cloud-platform"],
            )
        ]
    return instance


def _boot_disk(image_path: str, spec: ServerSpec) -> Any:
    return compute_v1.AttachedDisk(
        boot=True,
        auto_delete=True,
        initialize_params=compute_v1.AttachedDiskInitializeParams(
            source_image=image_path, disk_size_gb=spec.root_disk_gb or None
        ),
    )


def _metadata(request: LaunchRequest) -> Any:
    """The startup script with the steps it runs, and guest attributes for their reports."""
    return compute_v1.Metadata(
        items=[
            compute_v1.Items(
                key="startup-script", value=startup_script(request.scripts, request.key)
            ),
            compute_v1.Items(key="enable-guest-attributes", value="TRUE"),
            compute_v1.Items(key="byoi-steps", value=",".join(s.name for s in request.scripts)),
        ]
    )
