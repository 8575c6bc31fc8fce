"""DigitalOcean's answers to the port's values and errors, without a network."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.wiring import Providers, UnavailableProvider
from pipeline.config.loader import load_config
from providers.base import (
    TAG_APP,
    TAG_FAMILY,
    TAG_KEY,
    AuthError,
    Capacity,
    ImageState,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    ProviderError,
    ServerState,
    Throttled,
)
from providers.codec import describe_versions
from providers.digitalocean_codec import (
    error_from,
    image_from,
    server_from,
    tag,
    tags_of,
    version_tags,
)


def test_tags_keep_only_what_digitalocean_allows_and_read_back() -> None:
    assert tag(TAG_APP, "web") == "byoi:app:web"
    assert tag(TAG_KEY, "byoi-3f9a2c-1-1") == "byoi:key:byoi-3f9a2c-1-1"
    assert version_tags({"ruby_version": "3.2.2", "node": "v20.1"}) == [
        "byoi:version:node:v20-1",
        "byoi:version:ruby_version:3-2-2",
    ]
    assert tags_of(["byoi:app:web", "byoi:key:k-1", "monitoring", "byoi:family:web"]) == {
        TAG_APP: "web",
        TAG_KEY: "k-1",
        TAG_FAMILY: "web",
    }
    assert len(tag(TAG_APP, "x" * 400)) == 255


def test_images_take_exact_versions_from_the_description_and_fall_back_to_tags() -> None:
    described = {
        "id": 7,
        "name": "web-1",
        "status": "available",
        "created_at": "2026-11-20T09:00:00Z",
        "tags": ["byoi:family:web", "byoi:version:ruby_version:3-2-2"],
        "description": describe_versions({"ruby_version": "3.2.2"}),
    }
    image = image_from(described)
    assert (image.id, image.family, image.state) == ("7", "web", ImageState.READY)
    assert dict(image.versions) == {"ruby_version": "3.2.2"}
    assert image.created_at == datetime(2026, 11, 20, 9, tzinfo=UTC)
    assert dict(image_from({**described, "description": ""}).versions) == {"ruby_version": "3-2-2"}
    assert image_from({**described, "status": "retired"}).state == ImageState.OBSOLETE
    assert image_from({**described, "status": "weird"}).state == ImageState.UNKNOWN


def test_droplet_states_map_through_a_table_and_the_address_follows_the_network() -> None:
    droplet = {
        "id": 3,
        "name": "byoi-k-1",
        "status": "active",
        "image": {"id": 7},
        "tags": ["byoi:key:byoi-k-1"],
        "networks": {
            "v4": [
                {"ip_address": "203.0.113.4", "type": "public"},
                {"ip_address": "10.110.0.4", "type": "private"},
            ]
        },
    }
    server = server_from(droplet)
    assert (server.id, server.image_id, server.state) == ("3", "7", ServerState.RUNNING)
    assert server.key == "byoi-k-1" and server.address == "203.0.113.4"
    assert server_from(droplet, "private").address == "10.110.0.4"
    assert server_from({**droplet, "status": "new"}).state == ServerState.PENDING
    assert server_from({**droplet, "status": "archive"}).state == ServerState.TERMINATED


@pytest.mark.parametrize(
    ("status", "message", "kind", "words"),
    [
        (401, "Unable to authenticate you", AuthError, "DIGITALOCEAN_TOKEN"),
        (403, "You are not authorized", AuthError, "scope"),
        (404, "The resource could not be found.", NotFound, "could not be found"),
        (429, "API Rate limit exceeded.", Throttled, "rate limit"),
        (422, "Region is not available", Capacity, "choose another region"),
        (422, "Size is not available in this region.", Capacity, "server.size"),
        (422, "will exceed your droplet limit", LimitExceeded, "raise the limit"),
        (422, "You specified an invalid image.", InvalidRequest, "invalid image"),
        (503, "Service Unavailable", ProviderError, "HTTP 503"),
    ],
)
def test_answers_become_the_ports_errors_with_a_sentence(
    status: int, message: str, kind: type[ProviderError], words: str
) -> None:
    error = error_from("create droplet web-1", status, {"id": "x", "message": message})

    assert type(error) is kind
    assert error.reason.startswith("create droplet web-1: ") and words in error.reason


def test_an_app_on_digitalocean_without_a_token_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGITALOCEAN_TOKEN", raising=False)
    monkeypatch.delenv("DIGITALOCEAN_ACCESS_TOKEN", raising=False)
    (tmp_path / "m.yml").write_text(
        "production:\n  rails:\n    server:\n      vendor: digitalocean\n      region: ams3\n"
    )
    (tmp_path / "byoi.yml").write_text(
        "apps:\n  api:\n    manifest: m.yml\n    image: family:api\n"
        "    approvers: [UBOB]\n    deploy_command: 'true'\n"
    )
    config = load_config(tmp_path / "byoi.yml")

    assert config.providers_in_use() == {"digitalocean"}
    with pytest.raises(UnavailableProvider, match="set DIGITALOCEAN_TOKEN"):
        Providers(config).check()
