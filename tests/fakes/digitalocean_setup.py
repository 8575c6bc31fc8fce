"""Test set-up on the DigitalOcean fake: the real adapter pointed at it, and seeded snapshots."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from tests.fakes.digitalocean import FakeDigitalOcean


def provider_for(
    fake: FakeDigitalOcean, ssh_dir: Path, settings: dict[str, Any] | None = None
) -> Any:
    """The real adapter pointed at ``fake``, polling fast, with its SSH state in ``ssh_dir``."""
    from providers.digitalocean import DigitalOceanProvider

    assert fake.hosts is not None
    return DigitalOceanProvider(
        {
            "api_endpoint": fake.url,
            "ssh_dir": str(ssh_dir),
            "ssh_port": fake.hosts.port,
            "region": "ams3",
            "poll_seconds": 0.05,
            "wait_seconds": 20,
            "ssh_wait_seconds": 20,
            **(settings or {}),
        },
        environ={"DIGITALOCEAN_TOKEN": fake.token},
    )


def seed_image(
    fake: FakeDigitalOcean,
    provider: Any,
    name: str,
    family: str,
    versions: dict[str, str] | Any,
    created: datetime,
    files: dict[str, str] | None = None,
) -> Any:
    """A snapshot in ``family`` with versions as byoi records them, resolved through the port."""
    from providers.base import TAG_FAMILY
    from providers.codec import describe_versions
    from providers.digitalocean_codec import tag, version_tags

    image_id = fake.add_image(
        name,
        tags=[tag(TAG_FAMILY, family), *version_tags(versions)],
        description=describe_versions(versions),
        created=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        files=files or {"/etc/machine-id": "x\n"},
    )
    return provider.resolve_image(str(image_id))
