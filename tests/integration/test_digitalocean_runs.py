"""Whole runs on DigitalOcean: pydo against the API fake, scripts over SSH to real SSH servers."""

from __future__ import annotations

import socket
import stat
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.config.loader import load_config
from pipeline.domain.models import RunState, ServerStatus
from providers.base import (
    TAG_APP,
    TAG_BAKED_FROM,
    AuthError,
    LaunchRequest,
    Script,
    Server,
    ServerSpec,
)
from providers.ssh import COMMAND
from tests.conftest import IMAGE_FILES, START, World, world_around
from tests.fakes.digitalocean import FakeDigitalOcean
from tests.fakes.digitalocean_setup import provider_for, seed_image
from tests.fakes.http import DROP
from tests.fakes.sshd import FakeHosts

MANIFEST = """\
production:
  rails:
    configuration:
      ruby_version: 3.2.2
    server:
      unique_name: web
      vendor: digitalocean
      region: ams3
      size: s-2vcpu-4gb
"""
CONFIG = """\
database: byoi.db
providers:
  digitalocean:
    api_endpoint: {url}
    ssh_port: {port}
    ssh_dir: ssh
    poll_seconds: 0.05
    wait_seconds: 20
    ssh_wait_seconds: 20
groups:
  ops: [UALICE, UBOB]
apps:
  web:
    manifest: manifest.yml
    image: family:web
    target: web-lb
    operators: ["@ops"]
    approvers: ["@ops"]
    drain_seconds: 0
    release: v2
    deploy_command: {deploy!r}
    health_command: 'test -s current/VERSION'
"""
DEPLOY = 'mkdir -p current && echo "$BYOI_RELEASE" > current/VERSION'
FAILS_ON_SLOT_2 = (
    'case "$BYOI_SERVER" in *-2) echo "migrations failed: db unreachable" >&2; exit 3;; esac; '
    + DEPLOY
)


def write_config(root: Path, fake: FakeDigitalOcean, deploy: str = DEPLOY) -> None:
    assert fake.hosts is not None
    (root / "manifest.yml").write_text(MANIFEST)
    (root / "byoi.yml").write_text(CONFIG.format(url=fake.url, port=fake.hosts.port, deploy=deploy))


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDigitalOcean]:
    hosts = FakeHosts(tmp_path / "droplets")
    server = FakeDigitalOcean(tmp_path / "do", hosts).start()
    server.add_balancer("web-lb")
    yield server
    server.stop()
    hosts.close()


def make_world(root: Path, fake: FakeDigitalOcean, deploy: str = DEPLOY) -> World:
    write_config(root, fake, deploy)
    settings = load_config(root / "byoi.yml").providers["digitalocean"]
    provider = provider_for(fake, root / "ssh", dict(settings))
    seed_image(
        fake,
        provider,
        "web-base-v1",
        "web",
        {"ruby_version": "3.2.2"},
        START - timedelta(days=3),
        IMAGE_FILES,
    )
    return world_around(root, provider)


@pytest.fixture
def world(fake: FakeDigitalOcean, tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path, fake)
    yield w
    w.runner.wait(30)
    w.store.close()


def roots(fake: FakeDigitalOcean) -> list[Path]:
    assert fake.hosts is not None
    return [fake.hosts.hosts[d].root for d in sorted(fake.droplets)]


def test_scale_up_three_droplets_scrubbed_deployed_over_ssh_and_balanced(
    world: World, fake: FakeDigitalOcean, tmp_path: Path
) -> None:
    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.SUCCEEDED, [s.reason for s in run.servers]
    assert len(fake.droplets) == 3
    (key,) = fake.keys.values()
    assert key["public_key"] == (tmp_path / "ssh" / "id_ed25519.pub").read_text().strip()
    assert stat.S_IMODE((tmp_path / "ssh" / "id_ed25519").stat().st_mode) == 0o600
    for droplet in fake.droplets.values():
        assert droplet["size_slug"] == "s-2vcpu-4gb" and droplet["region"]["slug"] == "ams3"
        assert droplet["keys"] == [key["id"]]
        assert {"byoi:app:web", "byoi:env:production", "byoi:run:1"} <= set(droplet["tags"])
        assert f"byoi:key:{droplet['name']}" in droplet["tags"]
    for root in roots(fake):
        assert (root / "srv/app/current/VERSION").read_text() == "v2\n"
        assert (root / "etc/machine-id").read_text() == ""
        assert not (root / "etc/ssh/ssh_host_rsa_key").exists()
        assert not (root / "srv/app/shared/config/secrets.env").exists()
        assert (root / "etc/hostname").exists()  # only what scrub names is removed
    assert sorted(fake.balancers[next(iter(fake.balancers))]["droplet_ids"]) == sorted(
        fake.droplets
    )
    pinned = (tmp_path / "ssh" / "known_hosts").read_text().splitlines()
    assert sorted(line.split()[0] for line in pinned) == sorted(str(d) for d in fake.droplets)
    assert fake.hosts is not None
    commands = [c for h in fake.hosts.hosts.values() for c in h.commands]
    assert commands and set(commands) == {COMMAND}  # parameters never on the command line
    assert len(fake.calls("POST", r"^/v2/droplets$")) == 3
    # The three moved as one cohort: one call added them all to the balancer.
    (added,) = fake.calls("POST", r"^/v2/load_balancers/[^/]+/droplets$")
    assert sorted(added.body["droplet_ids"]) == sorted(fake.droplets)


def test_a_tag_refused_once_fails_no_droplet_of_the_cohort(
    world: World, fake: FakeDigitalOcean
) -> None:
    fake.fail("POST", r"^/v2/tags$", 422, "tag service hiccup")  # the probe's version tags

    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.SUCCEEDED, [s.reason for s in run.servers]
    versions = [{t for t in d["tags"] if "version" in t} for d in fake.droplets.values()]
    assert len(versions) == 3 and versions[0] and all(v == versions[0] for v in versions)


def test_dropped_connections_are_asked_again_or_looked_up_and_fail_no_droplet(
    world: World, fake: FakeDigitalOcean
) -> None:
    fake.fail("POST", r"^/v2/droplets$", DROP, applied=True)  # made, but no answer came
    fake.fail("GET", r"^/v2/load_balancers/[^/]+$", DROP)
    fake.fail("POST", r"^/v2/tags/[^/]+/resources$", DROP)

    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.SUCCEEDED, [s.reason for s in run.servers]
    assert len(fake.droplets) == 3  # the create without an answer was found by its key
    assert len(fake.calls("POST", r"^/v2/droplets$")) == 3


def test_a_balancer_that_cannot_be_read_at_first_fails_no_droplet(
    world: World, fake: FakeDigitalOcean
) -> None:
    for _ in range(5):  # every try of the cohort's first read (max_attempts)
        fake.fail("GET", r"^/v2/load_balancers/[^/]+$", 503)

    run = world.scale_and_approve("scale web 3")

    assert run.state == RunState.SUCCEEDED, [s.reason for s in run.servers]
    assert sorted(fake.balancers[next(iter(fake.balancers))]["droplet_ids"]) == sorted(
        fake.droplets
    )


def test_a_late_answer_is_cut_at_the_read_timeout_and_asked_again(
    world: World, fake: FakeDigitalOcean, tmp_path: Path
) -> None:
    late = provider_for(fake, tmp_path / "ssh", {"read_timeout": 1})
    image = late.resolve_image("family:web")
    requests = [LaunchRequest(f"late-{n}", f"late-{n}", image, ServerSpec(), {}) for n in (1, 2)]
    fake.answer_late("GET", r"^/v2/droplets/\d+$", 6)  # a read while waiting for active

    started = time.monotonic()
    launched = late.launch_all(requests)

    assert all(isinstance(s, Server) for s in launched), launched
    assert time.monotonic() - started < 5  # not the 6 s of the late answer


def test_scale_down_deregisters_and_deletes(world: World, fake: FakeDigitalOcean) -> None:
    world.scale_and_approve("scale web 3")

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.SUCCEEDED
    assert len(fake.droplets) == 1
    (lb,) = fake.balancers.values()
    assert lb["droplet_ids"] == list(fake.droplets)
    assert len(fake.calls("DELETE", r"^/v2/load_balancers/[^/]+/droplets$")) == 2


def test_refresh_from_a_server_snapshots_it_with_the_versions_its_probes_measured(
    world: World, fake: FakeDigitalOcean
) -> None:
    (server,) = world.scale_and_approve("scale web 1").servers

    run = world.scale_and_approve(f"refresh web --from {server.provider_id}")

    assert run.state == RunState.SUCCEEDED, [s.reason for s in run.servers]
    image = world.provider.resolve_image("family:web")
    assert image.name.startswith("web-production-")
    data = fake.images[int(image.id)]
    assert "byoi:family:web" in data["tags"]
    assert "byoi:version:ruby_version:3-2-2" in data["tags"]
    assert dict(image.versions) == {"ruby_version": "3.2.2"}
    assert (fake.base / "images" / image.id / "srv/app/current/VERSION").read_text() == "v2\n"
    action = fake.calls("POST", r"^/v2/droplets/\d+/actions$")[0]
    assert action.body == {"type": "snapshot", "name": image.name}
    assert len(fake.calls("GET", r"^/v2/actions/\d+$")) >= fake.action_polls
    droplet = fake.droplets[int(server.provider_id or 0)]
    assert "byoi:version:ruby_version:3-2-2" in droplet["tags"]  # measured after the clone


def test_refresh_bakes_on_a_builder_droplet_that_is_deleted_afterwards(
    world: World, fake: FakeDigitalOcean
) -> None:
    base = world.provider.resolve_image("family:web")

    run = world.scale_and_approve("refresh web")

    assert run.kind == "bake" and run.state == RunState.SUCCEEDED, run.reason
    image = world.provider.resolve_image("family:web")
    assert image.id != base.id and image.name.startswith("web-production-")
    assert dict(image.versions) == {"ruby_version": "3.2.2"}  # what `ruby -v` printed over SSH
    assert image.tags[TAG_BAKED_FROM] == base.id
    (builder,) = run.servers
    assert fake.by_tag(f"byoi:key:{builder.key}") == []
    assert fake.droplets == {}
    assert world.provider.list_servers({TAG_APP: "web"}) == []


def test_a_failing_deploy_is_reported_and_rolled_back(
    fake: FakeDigitalOcean, tmp_path: Path
) -> None:
    world = make_world(tmp_path, fake, FAILS_ON_SLOT_2)

    run = world.scale_and_approve("scale web 2")

    assert run.state == RunState.PARTIALLY_FAILED
    (failed,) = [s for s in run.servers if s.status == ServerStatus.FAILED]
    assert failed.slot == 2
    assert (failed.reason or "").startswith("deploy exited 3: ")
    assert "migrations failed: db unreachable" in (failed.reason or "")
    assert [d["name"] for d in fake.droplets.values()] == [f"byoi-{world.store.install_id}-1-1"]
    assert fake.by_tag(f"byoi:key:{failed.key}") == []
    world.store.close()


def test_a_rate_limit_waits_for_ratelimit_reset(world: World, fake: FakeDigitalOcean) -> None:
    fake.fail("POST", r"^/v2/droplets$", 429, reset_in=0.3)

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.SUCCEEDED
    first, second = fake.calls("POST", r"^/v2/droplets$")
    (reset,) = fake.resets
    assert first.at < reset <= second.at  # waited for the reset, not a blind quick retry
    assert second.at - reset < 1.0  # and not much longer
    assert len(fake.droplets) == 1


def test_a_5xx_after_the_droplet_was_made_finds_it_by_its_key(
    world: World, fake: FakeDigitalOcean
) -> None:
    fake.fail("POST", r"^/v2/droplets$", 500, applied=True)

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.SUCCEEDED
    assert len(fake.calls("POST", r"^/v2/droplets$")) == 1
    assert len(fake.droplets) == 1


@pytest.mark.parametrize(
    ("message", "sentence"),
    [
        ("Region is not available", "choose another region or size in the manifest"),
        (
            "creating this/these droplet(s) will exceed your droplet limit",
            "an account quota or limit is reached",
        ),
    ],
)
def test_422_limits_fail_with_a_sentence_and_leave_nothing(
    world: World, fake: FakeDigitalOcean, message: str, sentence: str
) -> None:
    fake.fail("POST", r"^/v2/droplets$", 422, message)

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.FAILED
    reason = run.servers[0].reason or ""
    assert reason.startswith("digitalocean ") and sentence in reason and message not in reason
    raw = [e.detail for e in world.store.audit_events(run.id) if e.event == "provider_error"]
    assert len(raw) == 1 and message in raw[0]
    assert fake.droplets == {}


def test_a_changed_host_key_stops_the_scripts(world: World, fake: FakeDigitalOcean) -> None:
    world.scale_and_approve("scale web 1")
    (droplet_id,) = fake.droplets
    server = world.provider.list_servers({"byoi:app": "web"})[0]
    assert fake.hosts is not None
    fake.hosts.new_host_key(droplet_id)

    started = time.monotonic()
    with pytest.raises(AuthError, match=r"host key of .* changed"):
        world.provider.run_script(server, Script("t", "true"))

    assert time.monotonic() - started < 5  # refused at once, not retried


def test_a_droplet_failing_the_balancers_check_is_rolled_back(
    world: World, fake: FakeDigitalOcean
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    (lb,) = fake.balancers.values()
    lb["health_check"] = {"protocol": "tcp", "port": closed}
    world.provider.wait_seconds = 3.0  # type: ignore[attr-defined]

    run = world.scale_and_approve("scale web 1")

    assert run.state == RunState.FAILED
    assert "fails the health check of web-lb" in (run.servers[0].reason or "")
    assert fake.droplets == {} and lb["droplet_ids"] == []


def test_a_bake_rolls_the_fleet_onto_it_over_ssh_and_prune_deletes_the_old_snapshot(
    world: World, fake: FakeDigitalOcean
) -> None:
    base = world.provider.resolve_image("family:web")
    old = {s.provider_id for s in world.scale_and_approve("scale web 2").servers}
    world.clock.advance(seconds=2)
    baked = world.scale_and_approve("refresh web")
    new = world.provider.resolve_image("family:web")
    assert baked.state == RunState.SUCCEEDED and new.id != base.id
    sizes: list[int] = []
    world.runner.checkpoint = lambda _: sizes.append(len(fake.balancers[lb(fake)]["droplet_ids"]))

    rolled = world.scale_and_approve("roll web --batch 1")

    assert rolled.state == RunState.SUCCEEDED, [s.reason for s in rolled.servers]
    live = world.provider.list_servers({TAG_APP: "web", "byoi:env": "production"})
    assert len(live) == 2 and {s.image_id for s in live} == {new.id}
    assert not {s.id for s in live} & old
    assert sorted(fake.balancers[lb(fake)]["droplet_ids"]) == sorted(int(s.id) for s in live)
    assert min(sizes) >= 2 and max(sizes) <= 3  # surge of one, never below the fleet
    for server in live:  # measured over SSH after the clone, written on the droplet
        assert "byoi:version:ruby_version:3-2-2" in fake.droplets[int(server.id)]["tags"]

    pruned = world.scale_and_approve("images prune web --keep 1")

    assert pruned.state == RunState.SUCCEEDED, pruned.reason
    assert [i.id for i in world.provider.list_images("web")] == [new.id]
    assert int(base.id) not in fake.images


def lb(fake: FakeDigitalOcean) -> str:
    return next(iter(fake.balancers))
