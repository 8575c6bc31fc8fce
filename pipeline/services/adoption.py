"""Moving servers from one byoi installation (database) to another: `byoi adopt`.

A server's key names the installation that made it (``byoi-<install id>-<run>-<slot>``), and
each installation manages only its own. Adopting records another installation's live servers
of the configured apps as this installation's, so status, scale-down and refresh see them and
the reconciler keeps them. The old installation must be stopped for good first.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pipeline.config.model import Config
from pipeline.domain.ownership import Adoption, Ownership, installation_of
from pipeline.ports import ProviderFor
from pipeline.state import adopted
from pipeline.state.store import Store
from providers.base import TAG_APP, TAG_ENV


def ownership(store: Store) -> Ownership:
    return Ownership(store.install_id, adopted.keys(store.database))


def install_id_of(database: Path) -> str:
    """The install id of another byoi database, read without changing it."""
    return adopted.install_id_of(database)


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
                if server.key is None or other not in installations or owned.owns(server):
                    continue
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
    adopted.record(store.database, found, now, actor)
    return found
