"""Shared test helpers: a world of config + local provider + SQLite store, with a settable clock."""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Generic, TypeVar, overload

import pytest

from pipeline.config.loader import load_config
from pipeline.config.model import Config
from pipeline.domain.models import Run, RunState
from pipeline.errors import UserError
from pipeline.execution import recovery
from pipeline.execution.runner import Runner
from pipeline.services.caller import Caller
from pipeline.services.replies import Reply, RunReply
from pipeline.services.service import Service
from pipeline.state.store import Store
from providers.base import Provider
from providers.local import LocalProvider

FIXTURES = Path(__file__).parent / "fixtures"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
R = TypeVar("R")
T = TypeVar("T")
P = TypeVar("P", bound=Provider)

MANIFEST = """\
staging: &staging
  rails:
    configuration:
      ruby_version: 3.2.2
      operating_system: ubuntu2204
    server:
      unique_name: web
      size: small
production:
  <<: *staging
"""

DEPLOY_OK = 'mkdir -p current && echo "$BYOI_RELEASE" > current/VERSION'


def config_text(**app_keys: str) -> str:
    """A byoi.yml for app `web`; keyword arguments add or replace app-level YAML lines."""
    keys = {
        "manifest": "manifest.yml",
        "provider": "local",
        "default_env": "staging",
        "image": "family:web",
        "target": "web-lb",
        "operators": '["@ops"]',
        "approvers": '["@ops", "UCAROL"]',
        "drain_seconds": "0",
        "max_servers": "10",
        "release": "v2",
        "deploy_command": repr(DEPLOY_OK),
        "health_command": "'test -s current/VERSION'",
    }
    keys.update(app_keys)
    body = "\n".join(f"    {k}: {v}" for k, v in keys.items() if v != "")
    return (
        "database: byoi.db\nproviders:\n  local:\n    root: local\n"
        "groups:\n  ops: [UALICE, UBOB]\napps:\n  web:\n" + body + "\n"
    )


IMAGE_FILES = {
    "/etc/machine-id": "abc123\n",
    "/etc/ssh/ssh_host_rsa_key": "PRIVATE\n",
    "/etc/ssh/ssh_host_rsa_key.pub": "PUBLIC\n",
    "/var/lib/cloud/instances/i-1/boot-finished": "x\n",
    "/srv/app/current/VERSION": "v1\n",
    "/srv/app/shared/config/secrets.env": "PASSWORD=hunter2\n",
    "/srv/app/.env": "KEY=1\n",
    "/etc/hostname": "source\n",
    "/etc/os-release": 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n',
    "/usr/local/bin/ruby": "#!/bin/sh\necho 'ruby 3.2.2p53 (2023-03-30 revision e51014f9c0)'\n",
}


def today() -> datetime:
    """The real clock's time, to the second: what a `byoi` process started by a test reads."""
    return datetime.now(UTC).replace(microsecond=0)


def days_ago(days: int) -> str:
    """An image's creation time for a real process: ``days`` before :func:`today`, in ISO 8601."""
    return (today() - timedelta(days=days)).isoformat()


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **delta: float) -> None:
        with self._lock:
            self.now += timedelta(**delta)


@dataclass
class Recorder:
    """A notifier that keeps every run it is told about."""

    runs: list[Run] = field(default_factory=list)
    needs_servers: ClassVar[bool] = True

    def run_changed(self, run: Run) -> None:
        self.runs.append(run)


@dataclass
class World(Generic[P]):
    root: Path
    config: Config
    store: Store
    provider: P
    runner: Runner
    service: Service
    clock: Clock
    notifier: Recorder

    @overload
    def say(self, text: str, user: str = "UALICE") -> Reply: ...

    @overload
    def say(self, text: str, user: str = "UALICE", *, expect: type[R]) -> R: ...

    def say(self, text: str, user: str = "UALICE", *, expect: type[object] = object) -> object:
        """What byoi answers ``user``; with ``expect``, assert the kind of answer too. Expecting
        a UserError (what services raise for a person to fix) returns the error raised."""
        if issubclass(expect, UserError):
            with pytest.raises(expect) as raised:
                self.service.handle(text, Caller(user), self.clock())
            return raised.value
        reply = self.service.handle(text, Caller(user), self.clock())
        assert isinstance(reply, expect), reply
        return reply

    def request(self, text: str, user: str = "UALICE") -> Run:
        """A run requested by ``text`` (not approved yet)."""
        run = self.say(text, user, expect=RunReply).run
        assert run is not None, text
        return run

    def stored(self, run_id: int) -> Run:
        run = self.store.run(run_id)
        assert run is not None
        return run

    def finish(self, run_id: int) -> Run:
        self.runner.wait(30)
        run = self.store.run(run_id)
        assert run is not None
        return run

    def scale_and_approve(self, text: str, approver: str = "UBOB") -> Run:
        run = self.request(text)
        self.say(f"approve {run.id}", approver)
        return self.finish(run.id)


def world_around(root: Path, provider: P, clock: Clock | None = None) -> World[P]:
    """Store, runner and service for the byoi.yml in ``root``, all on ``provider``."""
    loaded = load_config(root / "byoi.yml")
    store = Store(loaded.database)
    clock = clock or Clock()
    notifier = Recorder()
    runner = Runner(
        store=store, config=loaded, provider_for=lambda _: provider, notifier=notifier, clock=clock
    )
    service = Service(config=loaded, store=store, provider_for=lambda _: provider, runner=runner)
    return World(root, loaded, store, provider, runner, service, clock, notifier)


def make_world(
    root: Path, config: str | None = None, manifest: str = MANIFEST, now: datetime = START
) -> World[LocalProvider]:
    """A world whose base image is 3 days old at ``now``. A world that a real process will read
    with its own clock must be made at :func:`today`, or its image ages with the calendar."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.yml").write_text(manifest)
    (root / "byoi.yml").write_text(textwrap.dedent(config or config_text()))
    clock = Clock(now)
    provider = LocalProvider(root / "local", clock=clock)
    if not provider.list_images():
        provider.create_image(
            "web-base",
            IMAGE_FILES,
            family="web",
            versions={"ruby_version": "3.2.2", "operating_system": "ubuntu2204"},
            created_at=now - timedelta(days=3),
        )
    return world_around(root, provider, clock)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World[LocalProvider]]:
    w = make_world(tmp_path / "w")
    yield w
    w.runner.wait(30)
    w.store.close()


def resumed(world: World[P], provider: Provider | None = None) -> list[int]:
    """What the next start does: a fresh runner (on ``provider``, else the world's) resumes the
    world's unfinished runs; returns their ids once they have stopped."""
    fresh = Runner(
        store=world.store,
        config=world.config,
        provider_for=lambda _: provider or world.provider,
        notifier=world.notifier,
        clock=world.clock,
    )
    ids = recovery.resume(world.store, fresh, world.clock())
    fresh.wait(30)
    return ids


def eventually(predicate: Callable[[], T | None], timeout: float = 30) -> T:
    """Wait for ``predicate`` to give something truthy, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        time.sleep(0.02)


def terminal(run: Run) -> bool:
    return run.state not in (RunState.AWAITING_APPROVAL, RunState.APPROVED, RunState.RUNNING)
