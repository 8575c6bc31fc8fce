"""DigitalOcean resources to the port's values and back: tags, images, droplets, errors.

Kept apart from the adapter so it can be read and tested without pydo or a network.
DigitalOcean tags allow only letters, digits, ``:``, ``-`` and ``_``: a tag is ``<key>:<value>``
with other characters of the value turned into ``-`` (``2.7.0`` → ``2-7-0``), as the GCP labels
do; the exact versions go into the image description, which takes any text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from providers.base import (
    BYOI_TAGS,
    TAG_FAMILY,
    TAG_SOURCE,
    VERSION_TAG_PREFIX,
    AuthError,
    Capacity,
    Image,
    ImageState,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    ProviderError,
    Server,
    ServerState,
    Throttled,
)
from providers.codec import described_versions, utc_time

KNOWN_KEYS = (*BYOI_TAGS, TAG_SOURCE)
IMAGE_STATES = {
    "available": ImageState.READY,
    "NEW": ImageState.PENDING,
    "new": ImageState.PENDING,
    "pending": ImageState.PENDING,
    "retired": ImageState.OBSOLETE,
    "deleted": ImageState.DELETED,
}
SERVER_STATES = {
    "new": ServerState.PENDING,
    "active": ServerState.RUNNING,
    "off": ServerState.STOPPED,
    "archive": ServerState.TERMINATED,
}
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")


def tag_value(value: str) -> str:
    return _NOT_ALLOWED.sub("-", value)


def tag(key: str, value: str) -> str:
    """``byoi:app`` + ``web`` → ``byoi:app:web``; at most 255 characters."""
    return f"{key}:{tag_value(value)}"[:255]


def tags_of(names: Iterable[str]) -> dict[str, str]:
    """The port's tags from DigitalOcean tag names (values as encoded)."""
    found: dict[str, str] = {}
    for name in names:
        if name.startswith(VERSION_TAG_PREFIX):
            key, _, value = name.removeprefix(VERSION_TAG_PREFIX).partition(":")
            found[f"{VERSION_TAG_PREFIX}{key}"] = value
            continue
        for key in KNOWN_KEYS:
            if name.startswith(f"{key}:"):
                found[key] = name.removeprefix(f"{key}:")
    return found


def version_tags(versions: Mapping[str, str]) -> list[str]:
    return [tag(f"{VERSION_TAG_PREFIX}{tag_value(k)}", v) for k, v in sorted(versions.items())]


def versions_of(image: Mapping[str, Any]) -> dict[str, str]:
    """Exact from the description byoi writes; else as encoded in the tags."""
    described = described_versions(str(image.get("description") or ""))
    if described is not None:
        return described
    return {
        k.removeprefix(VERSION_TAG_PREFIX): v
        for k, v in tags_of(image.get("tags") or []).items()
        if k.startswith(VERSION_TAG_PREFIX)
    }


def _time(value: str | None) -> datetime:
    if not value:
        return datetime.min.replace(tzinfo=UTC)
    return utc_time(value)


def image_from(data: Mapping[str, Any]) -> Image:
    tags = tags_of(data.get("tags") or [])
    return Image(
        id=str(data["id"]),
        name=str(data.get("name") or data["id"]),
        created_at=_time(data.get("created_at")),
        state=IMAGE_STATES.get(str(data.get("status")), ImageState.UNKNOWN),
        family=tags.get(TAG_FAMILY),
        versions=versions_of(data),
        tags=tags,
    )


def address_of(data: Mapping[str, Any], network: str) -> str | None:
    for entry in (data.get("networks") or {}).get("v4") or []:
        if entry.get("type") == network:
            return str(entry["ip_address"])
    return None


def server_from(data: Mapping[str, Any], network: str = "public") -> Server:
    return Server(
        id=str(data["id"]),
        name=str(data.get("name") or data["id"]),
        image_id=str((data.get("image") or {}).get("id", "")),
        state=SERVER_STATES.get(str(data.get("status")), ServerState.UNKNOWN),
        created_at=_time(data.get("created_at")),
        tags=tags_of(data.get("tags") or []),
        address=address_of(data, network),
    )


def error_from(action: str, status: int, body: Mapping[str, Any]) -> ProviderError:
    """The one table of HTTP answers to the port's errors, each with a sentence to act on."""
    message = str(body.get("message") or body.get("id") or f"HTTP {status}")
    if status in (401, 403):
        return AuthError(
            f"{action}: DigitalOcean refused the token ({message}); check DIGITALOCEAN_TOKEN "
            "and that it has read and write scope"
        )
    if status == 404:
        return NotFound(f"{action}: {message}")
    if status == 429:
        return Throttled(f"{action}: DigitalOcean's API rate limit is used up ({message})")
    if status == 422:
        return _unprocessable(action, message)
    if status == 400:
        return InvalidRequest(f"{action}: {message}")
    return ProviderError(f"{action}: DigitalOcean answered HTTP {status}: {message}")


def _unprocessable(action: str, message: str) -> ProviderError:
    lower = message.lower()
    if "limit" in lower:
        return LimitExceeded(
            f"{action}: {message} — the account's droplet limit is reached; remove unused "
            "droplets or ask DigitalOcean to raise the limit"
        )
    if "not available" in lower or "unavailable" in lower or "capacity" in lower:
        return Capacity(
            f"{action}: {message} — choose another region or size "
            "(server.region / server.size in the manifest)"
        )
    return InvalidRequest(f"{action}: {message}")
