"""Moving servers from one byoi installation (database) to another: `byoi adopt`.

A server's key names the installation that made it (``byoi-<install id>-<run>-<slot>``), and
each installation manages only its own. Adopting records another installation's live servers
of the configured apps as this installation's, so status, scale-down and refresh see them and
the reconciler keeps them. The old installation must be stopped for good first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.config import Config
from pipeline.ownership import Ownership, installation_of
from pipeline.runner import ProviderFor
from pipeline.store import Store
from providers.base import TAG_APP, TAG_ENV


@dataclass(frozen=True)
class Adoption:
    provider: str
    server_id: str
    key: str
    app: str
    env: str
    installation: str


def ownership(store: Store) -> Ownership:
    rows = store.rows("SELECT key FROM adopted")
    return Ownership(store.install_id, frozenset(str(r["key"]) for r in rows))


def install_id_of(database: Path) -> str:
    """The install id of another byoi database, read without changing it."""
    import sqlite3

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE name = 'install_id'").fetchone()
    finally:
        conn.close()
    if row is None:
        raise ValueError(f"{database} is not a byoi database")
    return str(row[0])


def candidates(
    store: Store, config: Config, provider_for: ProviderFor, installations: set[str]
) -> list[Adoption]:
    """Live servers of the configured apps and environments made by ``installations``."""
    owned = ownership(store)
    found: list[Adoption] = []
    for app in config.apps.values():
        for env in app.environments.values():
            servers = provider_for(env.provider).list_servers(
                {TAG_APP: app.name, TAG_ENV: env.name}
            )
            for server in servers:
                other = installation_of(server.key)
                if other in installations and not owned.owns(server):
                    assert server.key is not None and other is not None
                    found.append(
                        Adoption(env.provider, server.id, server.key, app.name, env.name, other)
                    )
    return found


def adopt(
    store: Store,
    config: Config,
    provider_for: ProviderFor,
    installations: set[str],
    now: datetime,
    *,
    actor: str = "byoi adopt",
) -> list[Adoption]:
    """Record the servers ``candidates`` finds as this installation's; returns them."""
    found = candidates(store, config, provider_for, installations)
    with store.transaction() as conn:
        for item in found:
            conn.execute(
                "INSERT OR IGNORE INTO adopted VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    item.key,
                    item.provider,
                    item.server_id,
                    item.app,
                    item.env,
                    item.installation,
                    now.isoformat(),
                ],
            )
            conn.execute(
                "INSERT INTO audit (at, run_id, actor, event, detail) VALUES (?, NULL, ?, ?, ?)",
                [
                    now.isoformat(),
                    actor,
                    "adopted",
                    f"{item.provider} {item.server_id} {item.key} ({item.app}/{item.env})",
                ],
            )
    return found
