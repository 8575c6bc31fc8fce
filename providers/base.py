"""The provider port: neutral values, the error hierarchy and the Provider protocol.

Errors::

    ProviderError                 anything a provider call can fail with
    ├── NotFound                  the image, server or target does not exist
    ├── Throttled                 the API asked us to slow down (retried by adapters)
    ├── Capacity                  no capacity for this size/zone right now
    ├── LimitExceeded             a quota or account limit
    ├── AuthError                 credentials missing, expired or not allowed
    ├── InvalidRequest            the request itself is wrong (bad size, bad subnet, ...)
    ├── ProviderTimeout           waited too long for a state
    ├── ScriptFailed              a scrub/deploy/health script exited non-zero
    └── RegistrationFailed        the target never reported the server healthy

Adapters translate their SDK's errors into these at one point, ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
R = TypeVar("R")

TAG_RUN = "byoi:run"
TAG_APP = "byoi:app"
TAG_ENV = "byoi:env"
TAG_KEY = "byoi:key"
TAG_FAMILY = "byoi:family"
VERSION_TAG_PREFIX = "byoi:version:"
TAG_BAKED_FROM = "byoi:baked-from"
TAG_BAKE_HASH = "byoi:bake-hash"
TAG_SOURCE = "byoi:source"
BYOI_TAGS = (TAG_RUN, TAG_APP, TAG_ENV, TAG_KEY, TAG_FAMILY, TAG_BAKED_FROM, TAG_BAKE_HASH)
"""The tags byoi reads back from servers and images, each holding one value."""


class ProviderError(Exception):
    """A provider call failed; ``reason`` is safe to show to a user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(ProviderError):
    pass


class Throttled(ProviderError):
    pass


class Capacity(ProviderError):
    pass


class LimitExceeded(ProviderError):
    pass


class AlreadyExists(ProviderError):
    """A resource with that name exists already (made by another request)."""


class AuthError(ProviderError):
    pass


class InvalidRequest(ProviderError):
    pass


class ProviderTimeout(ProviderError):
    pass


class ScriptFailed(ProviderError):
    def __init__(self, reason: str, *, exit_code: int, output: str) -> None:
        super().__init__(reason)
        self.exit_code = exit_code
        self.output = output


class RegistrationFailed(ProviderError):
    pass


class ImageState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    DEPRECATED = "deprecated"
    OBSOLETE = "obsolete"
    DELETED = "deleted"
    FAILED = "failed"
    UNKNOWN = "unknown"


class ServerState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    created_at: datetime
    state: ImageState = ImageState.READY
    family: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    deprecated_at: datetime | None = None


def newest_usable(images: list[Image], now: datetime) -> Image | None:
    """A family's current image: the newest ready one not past its deprecation time."""
    usable = [
        i
        for i in images
        if i.state == ImageState.READY and not (i.deprecated_at and i.deprecated_at <= now)
    ]
    return max(usable, key=lambda i: (i.created_at, i.id)) if usable else None


@dataclass(frozen=True)
class Script:
    """A shell script run on a server; parameters travel only in ``env``."""

    name: str
    body: str
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 600.0


@dataclass(frozen=True)
class ScriptResult:
    exit_code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 5, chars: int = 1000) -> str:
        """The last ``lines`` lines, at most ``chars`` characters of them (a script may print
        one endless line)."""
        text = "\n".join(self.output.strip().splitlines()[-lines:])
        return text if len(text) <= chars else "…" + text[-chars:]


@dataclass(frozen=True)
class ServerSpec:
    """Where and how big a new server is, from the manifest's ``server`` fields."""

    size: str | None = None
    region: str | None = None
    zone: str | None = None
    subnet: str | None = None
    root_disk_gb: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchRequest:
    key: str
    """Idempotency key: the same key never creates a second server."""
    name: str
    image: Image
    spec: ServerSpec
    tags: Mapping[str, str]
    scripts: tuple[Script, ...] = ()
    """The steps ``run_script`` will be asked for, in order. Providers that can only run
    scripts at boot (GCP's startup script) install them here; the others run them on demand."""


@dataclass(frozen=True)
class Server:
    id: str
    name: str
    image_id: str
    state: ServerState
    created_at: datetime
    tags: Mapping[str, str] = field(default_factory=dict)
    address: str | None = None

    @property
    def key(self) -> str | None:
        return self.tags.get(TAG_KEY)


@dataclass(frozen=True)
class KeyMatch:
    """Servers whose key (``TAG_KEY``) starts with ``prefix`` or is one of ``keys``."""

    prefix: str
    keys: frozenset[str] = frozenset()

    def matches(self, key: str | None) -> bool:
        return key is not None and (key.startswith(self.prefix) or key in self.keys)


@dataclass(frozen=True)
class Target:
    """Where healthy servers receive traffic: a target group, instance group or local LB."""

    name: str
    drain_seconds: float = 0.0


class Provider(Protocol):
    """What byoi needs from a cloud. Every adapter passes tests/contract."""

    name: str

    def resolve_image(self, ref: str) -> Image:
        """An id, a name, or ``family:<name>`` (the newest ready image of that family)."""
        ...

    def list_images(self, family: str | None = None) -> list[Image]: ...

    def launch(self, request: LaunchRequest) -> Server:
        """Create a server and wait until it runs; the same key returns the same server."""
        ...

    def run_script(self, server: Server, script: Script) -> ScriptResult: ...

    def register(self, server: Server, target: Target) -> None:
        """Add to the target and wait until the target reports it healthy."""
        ...

    def deregister(self, server: Server, target: Target) -> None:
        """Remove from the target, waiting the target's drain time. Absent is fine."""
        ...

    def terminate(self, server: Server) -> None:
        """Destroy the server. An already terminated or unknown server is fine."""
        ...

    def snapshot(
        self,
        server: Server,
        *,
        name: str,
        family: str | None,
        versions: Mapping[str, str],
        tags: Mapping[str, str] | None = None,
    ) -> Image:
        """Create a new image from the server and wait until it is ready.

        ``versions`` are the measured ones; ``tags`` add provenance (``TAG_BAKED_FROM``,
        ``TAG_BAKE_HASH``). ``family`` None keeps the image out of every family (unpublished).
        """
        ...

    def delete_image(self, image: Image) -> None:
        """Delete the image and the storage behind it (AMI snapshots). Absent is fine."""
        ...

    def tag_server(self, server: Server, tags: Mapping[str, str]) -> None:
        """Add or replace tags/labels on a live server (measured versions, for consoles)."""
        ...

    def list_servers(self, tags: Mapping[str, str]) -> list[Server]:
        """Live (not terminated) servers carrying all of ``tags``."""
        ...

    def target_members(self, target: Target) -> list[str]:
        """Ids of servers the target currently holds."""
        ...


@runtime_checkable
class CountsServers(Protocol):
    """A provider that counts servers without listing them (the local provider's index)."""

    def count_servers(self, tags: Mapping[str, str], keys: KeyMatch) -> int:
        """How many live servers carry all of ``tags`` and a key that ``keys`` matches."""
        ...


@runtime_checkable
class Batches(Protocol):
    """A provider that takes many servers in one call, as clouds' APIs do (one listing waits
    for a thousand instances, one command reaches many, one call registers many targets).

    Each method returns one outcome per item, in the items' order: its result, or the
    ``ProviderError`` that item met (one item's failure is no other's). It returns when every
    item has its outcome. The runner moves a parallel run's new servers through their steps
    together with these, instead of a thread per server (pipeline/execution/cohort.py).
    """

    def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
        """``launch`` for each request."""
        ...

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        """``run_script`` for each server and its script, all running at once."""
        ...

    def register_all(self, servers: Sequence[Server], target: Target) -> list[ProviderError | None]:
        """``register`` for each server."""
        ...

    def tag_all(
        self, tagged: Sequence[tuple[Server, Mapping[str, str]]]
    ) -> list[ProviderError | None]:
        """``tag_server`` for each server and its tags (a probe's measured versions)."""
        ...


def each(call: Callable[[T], R], items: Iterable[T]) -> list[R | ProviderError]:
    """``call`` on every item in turn, an item's ``ProviderError`` kept as its outcome: a
    ``Batches`` method for a provider whose API takes one server at a time."""
    outcomes: list[R | ProviderError] = []
    for item in items:
        try:
            outcomes.append(call(item))
        except ProviderError as exc:
            outcomes.append(exc)
    return outcomes


def outcome(result: R | ProviderError) -> R:
    """One item's result of a ``Batches`` call; its error raised."""
    if isinstance(result, ProviderError):
        raise result
    return result


def count_servers(provider: Provider, tags: Mapping[str, str], keys: KeyMatch) -> int:
    """How many live servers carry all of ``tags`` and a key that ``keys`` matches: asked of a
    provider that can count, counted from its listing otherwise (a cloud's API lists)."""
    if isinstance(provider, CountsServers):
        return provider.count_servers(tags, keys)
    return sum(1 for server in provider.list_servers(tags) if keys.matches(server.key))
