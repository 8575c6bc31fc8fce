"""What the adapters' codecs share: cloud timestamps, base64 for script text, and the exact
versions byoi writes into an image's description (tags and labels can hold only a lossy form)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime

_DESCRIBED = re.compile(r"byoi-versions: (\{.*\})")


def utc_time(value: str) -> datetime:
    """An ISO 8601 time as the clouds write it (``Z`` or an offset), in UTC."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def describe_versions(versions: Mapping[str, str]) -> str:
    return f"byoi-versions: {json.dumps(dict(versions), sort_keys=True)}"


def described_versions(description: str) -> dict[str, str] | None:
    """The versions ``describe_versions`` wrote into ``description``, or None if it holds none."""
    described = _DESCRIBED.search(description)
    if described:
        try:
            return {str(k): str(v) for k, v in json.loads(described[1]).items()}
        except ValueError:
            pass
    return None
