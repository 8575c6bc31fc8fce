"""Which servers belong to this installation: keys with its prefix, or servers it adopted.

Several byoi installations (staging and production bots, an old and a new database) may share
one cloud account and one set of app names. Every read and every change considers only the
servers this installation owns; the others are shown apart and never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from providers.base import KeyMatch, Server


def key_prefix(install_id: str) -> str:
    """The start of every idempotency key a database with ``install_id`` makes."""
    return f"byoi-{install_id}-"


def installation_of(key: str | None) -> str | None:
    """The install id inside a key such as ``byoi-3f9a2c-12-1``, or None for other names."""
    parts = (key or "").split("-")
    if len(parts) == 4 and parts[0] == "byoi" and parts[2].isdigit() and parts[3].isdigit():
        return parts[1]
    return None


@dataclass(frozen=True)
class Ownership:
    install_id: str
    adopted: frozenset[str] = frozenset()
    """Keys of servers adopted from another installation (see pipeline/services/adoption.py)."""

    @property
    def keys(self) -> KeyMatch:
        """The keys of the servers this installation manages, for a provider to count."""
        return KeyMatch(key_prefix(self.install_id), self.adopted)

    def owns(self, server: Server) -> bool:
        return self.keys.matches(server.key)

    def split(self, servers: Iterable[Server]) -> tuple[list[Server], list[Server]]:
        """(ours, others): the servers this installation manages, and the rest."""
        matches = self.keys.matches  # made once: a fleet of thousands is split per listing
        ours: list[Server] = []
        others: list[Server] = []
        for server in servers:
            (ours if matches(server.key) else others).append(server)
        return ours, others


@dataclass(frozen=True)
class Adoption:
    """A server of another installation that this one takes over (`byoi adopt`)."""

    provider: str
    server_id: str
    key: str
    app: str
    env: str
    installation: str


def owner_label(server: Server) -> str:
    """Who a server that is not ours belongs to, as far as its tags say."""
    other = installation_of(server.key)
    return f"installation {other}" if other else "made outside byoi"
