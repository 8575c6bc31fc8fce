"""The local provider lists servers from its index, which never misses a live server."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import pytest

from pipeline.services.replies import RunReply
from providers.base import (
    TAG_APP,
    TAG_ENV,
    TAG_KEY,
    CountsServers,
    KeyMatch,
    LaunchRequest,
    Provider,
    Server,
    ServerSpec,
    ServerState,
    count_servers,
)
from providers.local import LocalProvider
from tests.conftest import IMAGE_FILES, make_world


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


def test_the_index_counts_servers_by_tag_and_key_as_a_listing_would(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    ours = [_launch(provider, f"byoi-me-1-{n}") for n in (1, 2, 3)]
    _launch(provider, "byoi-other-1-1")  # another installation's server
    _launch(provider, "byoi-other-2-1")  # ... adopted by this one
    _launch(provider, "byoi-me-2-1", app="api")
    provider.terminate(provider.list_servers({TAG_KEY: ours[0]})[0])
    keys = KeyMatch("byoi-me-", frozenset({"byoi-other-2-1", "byoi-gone-1-1"}))
    web = {TAG_APP: "web", TAG_ENV: "s"}

    counted = provider.count_servers(web, keys)

    assert counted == 3 == sum(keys.matches(s.key) for s in provider.list_servers(web))
    assert provider.count_servers({}, keys) == 4
    assert provider.count_servers(web, KeyMatch("byoi-me-")) == 2
    assert provider.count_servers({TAG_APP: "web", TAG_ENV: "other"}, keys) == 0


def test_a_count_reads_no_server_metadata(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    for n in range(5):
        _launch(provider, f"byoi-me-1-{n}")
    # Metadata no count may need: neither the servers' files nor the index's decoded rows.
    for path in (tmp_path / "servers").glob("*/server.json"):
        path.unlink()
    provider._index._conn.execute("UPDATE live SET meta = 'not json'")

    assert provider.count_servers({TAG_APP: "web", TAG_ENV: "s"}, KeyMatch("byoi-me-")) == 5
    with pytest.raises(json.JSONDecodeError):
        provider.list_servers({TAG_APP: "web"})  # a listing does read them


def test_a_provider_that_cannot_count_is_counted_from_its_listing(tmp_path: Path) -> None:
    local = _provider(tmp_path)
    for key in ("byoi-me-1-1", "byoi-me-1-2", "byoi-other-1-1"):
        _launch(local, key)

    class Lister:
        """Only a listing, as the cloud adapters have."""

        def list_servers(self, tags: Mapping[str, str]) -> list[Server]:
            return local.list_servers(tags)

    lister = cast(Provider, Lister())

    assert not isinstance(lister, CountsServers) and isinstance(local, CountsServers)
    assert count_servers(lister, {TAG_APP: "web"}, KeyMatch("byoi-me-")) == 2
    assert count_servers(local, {TAG_APP: "web"}, KeyMatch("byoi-me-")) == 2


def test_an_index_made_before_its_tag_columns_gets_them_and_counts(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    ids = [_launch(provider, f"byoi-me-1-{n}") for n in (1, 2)]
    provider.close()
    (tmp_path / "servers" / "index.db").unlink()
    # The index as the provider wrote it before the columns: live (id, meta) and tags.
    old = sqlite3.connect(tmp_path / "servers" / "index.db", isolation_level=None)
    old.execute("CREATE TABLE live (id TEXT PRIMARY KEY, meta TEXT NOT NULL)")
    old.execute(
        """CREATE TABLE tags (id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (name, value, id)) WITHOUT ROWID"""
    )
    for server_id in ids:
        meta = (tmp_path / "servers" / server_id / "server.json").read_text()
        old.execute("INSERT INTO live VALUES (?, ?)", [server_id, meta])
        old.executemany(
            "INSERT INTO tags VALUES (?, ?, ?)",
            [(server_id, k, v) for k, v in json.loads(meta)["tags"].items()],
        )
    old.close()

    again = LocalProvider(tmp_path)
    _launch(again, "byoi-me-2-1")

    assert again.count_servers({TAG_APP: "web", TAG_ENV: "s"}, KeyMatch("byoi-me-")) == 3
    assert [s.id for s in again.list_servers({TAG_APP: "web"})] == [*ids, "byoi-me-2-1"]


def test_a_scale_up_counts_the_fleet_without_reading_its_servers(tmp_path: Path) -> None:
    world = make_world(tmp_path / "w")
    world.scale_and_approve("scale web 2")
    world.provider._index._conn.execute("UPDATE live SET meta = 'not json'")

    reply = world.say("scale web +3 --dry-run")

    assert isinstance(reply, RunReply) and reply.plan is not None
    assert (reply.plan.current, reply.plan.desired) == (2, 5)
    world.store.close()
