"""GCE resources to the port's values and back, and the startup script that runs the steps.

Kept apart from the adapter so it can be read and tested without the SDK's clients.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from providers.base import BYOI_TAGS, Image, ImageState, Script, Server, ServerState
from providers.codec import b64, described_versions, utc_time

LABEL_PREFIX = "byoi-v-"
LABELS = {tag: tag.replace(":", "-") for tag in BYOI_TAGS}
"""byoi's tags as label keys, which allow no colon: ``byoi:run`` is ``byoi-run``."""
TAGS = {v: k for k, v in LABELS.items()}
IMAGE_STATES = {
    "READY": ImageState.READY,
    "PENDING": ImageState.PENDING,
    "FAILED": ImageState.FAILED,
    "DELETING": ImageState.DELETED,
}
DEPRECATION = {
    "DEPRECATED": ImageState.DEPRECATED,
    "OBSOLETE": ImageState.OBSOLETE,
    "DELETED": ImageState.DELETED,
}
SERVER_STATES = {
    "PROVISIONING": ServerState.PENDING,
    "STAGING": ServerState.PENDING,
    "RUNNING": ServerState.RUNNING,
    "STOPPING": ServerState.STOPPING,
    "SUSPENDING": ServerState.STOPPING,
    "SUSPENDED": ServerState.STOPPED,
    "STOPPED": ServerState.STOPPED,
    "TERMINATED": ServerState.STOPPED,
    "REPAIRING": ServerState.UNKNOWN,
}


def label_value(value: str) -> str:
    """GCE label values allow only [a-z0-9_-] and 63 characters: 2.7.0 is stored as 2-7-0."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def versions_of(image: Any) -> dict[str, str]:
    """Versions as recorded: exact in the description byoi writes, else from the labels."""
    described = described_versions(image.description or "")
    if described is not None:
        return described
    return {
        str(k).removeprefix(LABEL_PREFIX): str(v)
        for k, v in image.labels.items()
        if str(k).startswith(LABEL_PREFIX)
    }


def version_labels(versions: Mapping[str, str]) -> dict[str, str]:
    """Measured versions as labels: ``byoi-v-ruby_version: 3-2-2``."""
    return {f"{LABEL_PREFIX}{k}".lower()[:63]: label_value(v) for k, v in versions.items()}


def image_from(image: Any) -> Image:
    labels = dict(image.labels)
    deprecated = image.deprecated.state if image.deprecated else ""
    state = DEPRECATION.get(deprecated) or IMAGE_STATES.get(image.status, ImageState.UNKNOWN)
    deleted_at = image.deprecated.deprecated if image.deprecated else ""
    return Image(
        id=image.name,
        name=image.name,
        created_at=utc_time(image.creation_timestamp),
        state=state,
        family=image.family or None,
        versions=versions_of(image),
        tags={TAGS.get(str(k), str(k)): str(v) for k, v in labels.items()},
        deprecated_at=utc_time(deleted_at) if deleted_at else None,
    )


def server_from(instance: Any, zone: str) -> Server:
    labels = dict(instance.labels)
    return Server(
        id=f"{zone}/{instance.name}",
        name=instance.name,
        image_id=labels.get("byoi-image", ""),
        state=SERVER_STATES.get(instance.status, ServerState.UNKNOWN),
        created_at=utc_time(instance.creation_timestamp),
        tags={TAGS.get(str(k), str(k)): str(v) for k, v in labels.items()},
        address=(
            instance.network_interfaces[0].network_i_p if instance.network_interfaces else None
        ),
    )


def startup_script(scripts: tuple[Script, ...], key: str) -> str:
    """Run each step once, stop at the first failure, report every result as guest attributes.

    Parameters travel base64-encoded into environment variables, never as shell text.
    """
    lines = [
        "#!/bin/bash",
        "# byoi: runs the steps below once per server and reports each through guest attributes.",
        "set -u",
        'report() { curl -sf -X PUT --data "$2" -H "Metadata-Flavor: Google" '
        '"http://metadata.google.internal/computeMetadata/v1/instance/guest-attributes/byoi/$1" '
        ">/dev/null; }",
        f'marker="${{BYOI_STATE_DIR:-/var/lib/byoi}}/{key}"',
        'mkdir -p "$marker"',
    ]
    for script in scripts:
        env = " ".join(
            f'{n}="$(printf %s {b64(v)} | base64 -d)"' for n, v in sorted(script.env.items())
        )
        name = script.name
        lines += [
            f'if [ ! -e "$marker/{name}" ]; then',
            f'  out=$(env {env} bash -c "$(printf %s {b64(script.body)} | base64 -d)" 2>&1)',
            "  code=$?",
            f'  report {name}-output "$(printf %s "$out" | tail -c 1024)"',
            f'  report {name}-exit "$code"',
            '  [ "$code" = 0 ] || exit "$code"',
            f'  touch "$marker/{name}"',
            "fi",
        ]
    return "\n".join(lines) + "\n"
