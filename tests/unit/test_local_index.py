"""The local provider lists servers from its index, which never misses a live server."""

from __future__ import annotations

import json
from pathlib import Path

from providers.base import TAG_APP, TAG_ENV, TAG_KEY, LaunchRequest, ServerSpec, ServerState
from providers.local import LocalProvider
from tests.conftest import IMAGE_FILES


def _provider(root: Path) -> LocalProvider:
    provider = LocalProvider(root)
    if not provider.list_images():
        provider.create_image("base", IMAGE_FILES, family="web")
    return provider


def _launch(provider: LocalProvider, key: str, app: str = "web") -> str:
    request = LaunchRequest(
        key, key, provider.resolve_image("family:web"), ServerSpec(), {TAG_APP: app, TAG_ENV: "s"}
    )
    return provider.launch(request).id


def test_listing_by_tag_finds_only_live_servers_that_carry_every_tag(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    a, b, c = (
        _launch(provider, k, app) for k, app in (("k-a", "web"), ("k-b", "web"), ("k-c", "api"))
    )
    provider.terminate(provider.list_servers({TAG_KEY: b})[0])

    assert [s.id for s in provider.list_servers({TAG_APP: "web", TAG_ENV: "s"})] == [a]
    assert [s.id for s in provider.list_servers({})] == [a, c]
    assert provider.list_servers({TAG_APP: "web", TAG_ENV: "other"}) == []


def test_a_directory_made_before_the_index_is_indexed_on_first_use(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    kept = _launch(provider, "k-1")
    gone = _launch(provider, "k-2")
    provider.terminate(provider.list_servers({TAG_KEY: gone})[0])
    provider.close()
    (tmp_path / "servers" / "index.db").unlink()

    again = LocalProvider(tmp_path)

    assert [s.id for s in again.list_servers({TAG_APP: "web"})] == [kept]


def test_a_launch_cut_short_is_still_listed_and_terminate_unlists_it(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    # What a crash between entering the index and making the directory leaves behind.
    provider._index.put(
        {
            "id": "k-lost",
            "name": "k-lost",
            "image_id": "img",
            "state": ServerState.PENDING.value,
            "created_at": "2026-11-02T09:00:00+00:00",
            "tags": {TAG_APP: "web", TAG_KEY: "k-lost"},
        }
    )

    (lost,) = provider.list_servers({TAG_APP: "web"})
    assert lost.state == ServerState.PENDING
    provider.terminate(lost)
    assert provider.list_servers({TAG_APP: "web"}) == []


def test_a_server_made_before_its_index_entry_is_listed_again_by_the_retried_launch(
    tmp_path: Path,
) -> None:
    provider = _provider(tmp_path)
    server_id = _launch(provider, "k-1")
    provider._index.remove(server_id)  # a crash after the directory, before the index
    meta = json.loads((tmp_path / "servers" / server_id / "server.json").read_text())

    again = _launch(provider, "k-1")

    assert again == server_id and meta["state"] == ServerState.RUNNING
    assert [s.id for s in provider.list_servers({TAG_KEY: "k-1"})] == [server_id]
