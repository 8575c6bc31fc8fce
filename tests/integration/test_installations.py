"""Two byoi installations (two databases) on one cloud account: neither sees nor touches the
other's servers, and `byoi adopt` moves servers from an old installation to a new one."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot import cli
from pipeline.config.loader import load_config
from pipeline.domain.models import RunKind, RunState
from pipeline.errors import UserError
from pipeline.execution import recovery
from pipeline.services import adoption
from pipeline.services.replies import InfoReply, RunReply, StatusReply
from providers.aws import AwsProvider
from providers.base import TAG_APP, Provider
from providers.gcp import GcpProvider
from tests.conftest import World, make_world, world_around
from tests.fakes.compute import FakeCompute
from tests.integration import test_aws_runs, test_gcp_runs

Pair = tuple[World, World]


def second(first: World, root: Path, provider: Provider) -> World:
    """Installation B: the same byoi.yml and manifest, its own database, the same account."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(first.root / "manifest.yml", root / "manifest.yml")
    # The local provider's "account" is its directory: B points at A's.
    text = (first.root / "byoi.yml").read_text()
    (root / "byoi.yml").write_text(text.replace("root: local", f"root: {first.root / 'local'}"))
    return world_around(root, provider, first.clock)


def close(*worlds: World) -> None:
    for world in worlds:
        world.runner.wait(30)
        world.store.close()


@pytest.fixture
def local_pair(tmp_path: Path) -> Iterator[Pair]:
    a = make_world(tmp_path / "a")
    b = second(a, tmp_path / "b", a.provider)
    yield a, b
    close(a, b)


@pytest.fixture
def aws_pair(aws: str, tmp_path: Path) -> Iterator[Pair]:
    a = test_aws_runs.aws_world(tmp_path / "a")
    b = second(a, tmp_path / "b", AwsProvider(a.config.providers["aws"]))
    yield a, b
    close(a, b)


@pytest.fixture
def gcp_pair(tmp_path: Path) -> Iterator[Pair]:
    fake = FakeCompute().start()
    fake.add_group(test_gcp_runs.ZONE, "web-lb")
    fake.add_image("web-base-v1", "web", {}, "2026-11-20T09:00:00.000+00:00")
    root = tmp_path / "a"
    root.mkdir()
    (root / "manifest.yml").write_text(test_gcp_runs.MANIFEST)
    (root / "byoi.yml").write_text(test_gcp_runs.CONFIG.format(url=fake.url))
    settings = load_config(root / "byoi.yml").providers["gcp"]
    a = world_around(root, GcpProvider(settings))
    b = second(a, tmp_path / "b", GcpProvider(settings))
    yield a, b
    close(a, b)
    fake.stop()


def status(world: World) -> tuple[set[str], set[str]]:
    """(servers managed here, servers shown as not managed here), over every environment."""
    reply = world.say("status web", expect=StatusReply)
    ours = {v.server.id for e in reply.envs for v in e.servers}
    others = {s.id for e in reply.envs for s in e.others}
    return ours, others


def live(world: World) -> set[str]:
    return {s.id for s in world.provider.list_servers({TAG_APP: "web"})}


def neither_touches_the_other(a: World, b: World) -> None:
    first = a.scale_and_approve("scale web 2")
    assert first.state == RunState.SUCCEEDED, [s.reason for s in first.servers]
    a_servers = live(a)

    assert status(b) == (set(), a_servers)
    plan = b.say("scale web 1 --dry-run", expect=RunReply).plan
    assert plan is not None and plan.current == 0 and plan.kind == RunKind.SCALE_UP
    assert plan.servers == ()
    assert isinstance(b.say("scale web 0"), InfoReply)  # nothing of B's to remove
    for server in a.provider.list_servers({TAG_APP: "web"}):  # B cannot snapshot A's servers
        refused = b.say(f"refresh web --from {server.name}", expect=UserError)
        assert "has no server" in refused.message
    assert recovery.reconcile(b.store, b.config, lambda _: b.provider, b.clock()) == []

    b.scale_and_approve("scale web 1")
    b_servers = live(b) - a_servers
    assert len(b_servers) == 1
    assert status(a) == (a_servers, b_servers)

    down = a.scale_and_approve("scale web 0")
    assert down.state == RunState.SUCCEEDED
    assert {s.provider_id for s in down.servers} == a_servers
    assert live(a) == b_servers  # only A's servers went
    assert recovery.reconcile(a.store, a.config, lambda _: a.provider, a.clock()) == []
    assert live(b) == b_servers


def test_two_installations_on_the_local_provider(local_pair: Pair) -> None:
    neither_touches_the_other(*local_pair)


def test_two_installations_on_one_aws_account(aws_pair: Pair) -> None:
    neither_touches_the_other(*aws_pair)


def test_two_installations_on_one_gcp_project(gcp_pair: Pair) -> None:
    neither_touches_the_other(*gcp_pair)


def adopt_and_manage(a: World, b: World, adopt: Callable[[], object]) -> None:
    a.scale_and_approve("scale web 2")
    old = live(a)

    adopt()

    assert status(b) == (old, set())
    down = b.scale_and_approve("scale web 1")
    assert down.state == RunState.SUCCEEDED
    (kept,) = live(b)
    assert kept in old
    assert recovery.reconcile(b.store, b.config, lambda _: b.provider, b.clock()) == []
    assert live(b) == {kept}  # the reconciler keeps an adopted server
    up = b.scale_and_approve("scale web 3")
    assert up.state == RunState.SUCCEEDED and up.current == 1
    events = [e.event for e in b.store.audit_events()]
    assert events.count("adopted") == 2


def test_adopt_moves_servers_from_an_old_database_on_aws(aws_pair: Pair) -> None:
    a, b = aws_pair
    adopt_and_manage(
        a,
        b,
        lambda: adoption.adopt(
            b.store, b.config, lambda _: b.provider, {a.store.install_id}, b.clock()
        ),
    )


def test_byoi_adopt_reads_the_old_database_and_can_dry_run(
    local_pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = local_pair
    config = ["--config", str(b.root / "byoi.yml")]
    a.scale_and_approve("scale web 2")

    dry = cli.main([*config, "adopt", "--from", str(a.root / "byoi.db"), "--dry-run"])
    assert dry == 0 and "2 server(s) of installation" in capsys.readouterr().out
    assert status(b) == (set(), live(a))

    b.store.close()  # `byoi adopt` is its own process, on B's database
    assert cli.main([*config, "adopt", "--from", str(a.root / "byoi.db")]) == 0
    assert "2 server(s) of installation" in capsys.readouterr().out
    assert cli.main([*config, "adopt", "--install", a.store.install_id]) == 0
    assert "0 server(s) of installation" in capsys.readouterr().out  # nothing left to adopt

    b_again = world_around(b.root, b.provider, b.clock)
    assert status(b_again) == (live(a), set())
    b_again.store.close()
