"""The provider contract: every adapter behaves the same through the port.

Each adapter joins by adding a harness to ``HARNESSES``: it builds the provider against its
emulated service, seeds an image there, and deprecates one the way that cloud records it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from providers.base import (
    TAG_APP,
    TAG_BAKE_HASH,
    TAG_BAKED_FROM,
    TAG_KEY,
    VERSION_TAG_PREFIX,
    Batches,
    Image,
    ImageState,
    LaunchRequest,
    NotFound,
    Provider,
    ProviderError,
    Script,
    ServerSpec,
    Target,
    outcome,
)
from providers.local import LocalProvider
from tests.conftest import START


class Harness(Protocol):
    provider: Provider
    executes_scripts: bool

    def seed_image(
        self, name: str, family: str, versions: Mapping[str, str], age_days: int
    ) -> Image: ...

    def deprecate(self, image: Image, at: datetime) -> None:
        """Mark ``image`` deprecated from ``at`` on, as this cloud records a deprecation."""
        ...


class LocalHarness:
    executes_scripts = True

    def __init__(self, request: pytest.FixtureRequest, root: Path) -> None:
        self.local = LocalProvider(root)
        self.provider: Provider = self.local

    def seed_image(
        self, name: str, family: str, versions: Mapping[str, str], age_days: int
    ) -> Image:
        return self.local.create_image(
            name,
            {"/etc/machine-id": "x\n"},
            family=family,
            versions=versions,
            created_at=START - timedelta(days=age_days),
        )

    def deprecate(self, image: Image, at: datetime) -> None:
        self.local.set_image_state(image.id, ImageState.READY, deprecated_at=at)


class AwsHarness:
    """moto in server mode; moto's SSM runs nothing, so script tests are bash tests instead."""

    executes_scripts = False

    def __init__(self, request: pytest.FixtureRequest, root: Path) -> None:
        from providers.aws import AwsProvider
        from tests.integration import moto_env

        request.getfixturevalue("aws")
        moto_env.target_group("web-lb")
        self.provider = AwsProvider(
            {"region": moto_env.REGION, "poll_seconds": 1, "wait_seconds": 30}
        )
        self._seed = moto_env.seed_ami
        self._deprecations: dict[str, datetime] = {}
        self.provider.ec2.meta.events.register(
            "after-call.ec2.DescribeImages", self._add_deprecation_times
        )

    def seed_image(
        self, name: str, family: str, versions: Mapping[str, str], age_days: int
    ) -> Image:
        return self.provider.resolve_image(self._seed(name, family, dict(versions)))

    def deprecate(self, image: Image, at: datetime) -> None:
        self._deprecations[image.id] = at

    def _add_deprecation_times(self, parsed: dict[str, Any], **_: Any) -> None:
        """EC2 answers an AMI's DeprecationTime; moto keeps none, so it is added here."""
        for found in parsed.get("Images", []):
            at = self._deprecations.get(found["ImageId"])
            if at is not None:
                found["DeprecationTime"] = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class GcpHarness:
    """The real google-cloud-compute clients against the in-repo Compute REST fake."""

    executes_scripts = False

    def __init__(self, request: pytest.FixtureRequest, root: Path) -> None:
        from providers.gcp import GcpProvider
        from tests.fakes.compute import FakeCompute

        self.fake = FakeCompute().start()
        request.addfinalizer(self.fake.stop)
        self.fake.add_group("us-central1-a", "web-lb")
        self.provider = GcpProvider(
            {
                "project": self.fake.project,
                "api_endpoint": self.fake.url,
                "credentials": "anonymous",
                "zone": "us-central1-a",
                "poll_seconds": 0.05,
                "wait_seconds": 20,
            }
        )

    def seed_image(
        self, name: str, family: str, versions: Mapping[str, str], age_days: int
    ) -> Image:
        from providers.codec import describe_versions
        from providers.gcp_codec import LABEL_PREFIX, label_value

        created = (START - timedelta(days=age_days)).isoformat(timespec="milliseconds")
        labels = {f"{LABEL_PREFIX}{k}": label_value(v) for k, v in versions.items()}
        self.fake.add_image(name, family, labels, created)
        self.fake.images[name]["description"] = describe_versions(versions)
        return self.provider.resolve_image(name)

    def deprecate(self, image: Image, at: datetime) -> None:
        # What `images.deprecate` leaves: a DEPRECATED state and the time it took effect.
        stamp = at.isoformat(timespec="milliseconds")
        self.fake.images[image.id]["deprecated"] = {"state": "DEPRECATED", "deprecated": stamp}


class DigitalOceanHarness:
    """pydo against the DigitalOcean API fake; droplets are real SSH servers running bash."""

    executes_scripts = True

    def __init__(self, request: pytest.FixtureRequest, root: Path) -> None:
        from tests.fakes.digitalocean import FakeDigitalOcean
        from tests.fakes.digitalocean_setup import provider_for
        from tests.fakes.sshd import FakeHosts

        hosts = FakeHosts(root / "droplets")
        request.addfinalizer(hosts.close)
        self.fake = FakeDigitalOcean(root / "do", hosts).start()
        request.addfinalizer(self.fake.stop)
        self.fake.add_balancer("web-lb")
        self.provider = provider_for(self.fake, root / "ssh")

    def seed_image(
        self, name: str, family: str, versions: Mapping[str, str], age_days: int
    ) -> Image:
        from tests.fakes.digitalocean_setup import seed_image

        created = START - timedelta(days=age_days)
        return seed_image(self.fake, self.provider, name, family, versions, created)

    def deprecate(self, image: Image, at: datetime) -> None:
        # DigitalOcean keeps no deprecation time: an image no longer to be used is retired.
        self.fake.images[int(image.id)]["status"] = "retired"


HARNESSES: dict[str, Callable[[pytest.FixtureRequest, Path], Harness]] = {
    "local": LocalHarness,
    "aws": AwsHarness,
    "gcp": GcpHarness,
    "digitalocean": DigitalOceanHarness,
}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    yield HARNESSES[request.param](request, tmp_path)


def launch(h: Harness, key: str, image: Image) -> LaunchRequest:
    return LaunchRequest(
        key=key,
        name=key,
        image=image,
        spec=ServerSpec(size="small"),
        tags={TAG_APP: "web", "byoi:env": "staging", "byoi:run": "1"},
    )


def test_images_resolve_by_id_name_and_family(harness: Harness) -> None:
    old = harness.seed_image("web-old", "web", {"ruby_version": "3.1.2"}, 40)
    new = harness.seed_image("web-new", "web", {"ruby_version": "3.2.2"}, 2)
    harness.seed_image("other", "api", {}, 1)

    assert harness.provider.resolve_image(old.id).name == "web-old"
    assert harness.provider.resolve_image("web-old").id == old.id
    assert harness.provider.resolve_image("family:web").id == new.id
    assert dict(harness.provider.resolve_image(new.id).versions) == {"ruby_version": "3.2.2"}
    assert sorted(i.name for i in harness.provider.list_images("web")) == ["web-new", "web-old"]
    with pytest.raises(NotFound):
        harness.provider.resolve_image("family:nothing")
    with pytest.raises(NotFound):
        harness.provider.resolve_image("no-such-image")


def test_a_family_skips_an_image_past_its_deprecation_which_stays_resolvable_by_id(
    harness: Harness,
) -> None:
    old = harness.seed_image("web-old", "web", {}, 40)
    new = harness.seed_image("web-new", "web", {}, 2)

    harness.deprecate(new, datetime.now(UTC) - timedelta(hours=1))

    assert harness.provider.resolve_image("family:web").id == old.id
    assert harness.provider.resolve_image(new.id).id == new.id


def test_launch_is_idempotent_by_key_and_servers_are_found_by_tags(harness: Harness) -> None:
    image = harness.seed_image("web", "web", {}, 1)

    first = harness.provider.launch(launch(harness, "byoi-t-1-1", image))
    again = harness.provider.launch(launch(harness, "byoi-t-1-1", image))
    other = harness.provider.launch(launch(harness, "byoi-t-1-2", image))

    assert first.id == again.id != other.id
    assert first.image_id == image.id
    listed = harness.provider.list_servers({TAG_APP: "web"})
    assert sorted(s.id for s in listed) == sorted([first.id, other.id])
    (by_key,) = harness.provider.list_servers({TAG_KEY: "byoi-t-1-2"})
    assert by_key.id == other.id
    assert by_key.tags["byoi:run"] == "1"


def test_scripts_get_their_parameters_and_report_exit_code_and_output(harness: Harness) -> None:
    if not harness.executes_scripts:
        pytest.skip("this emulator executes no scripts; see tests/unit/test_scripts.py")
    server = harness.provider.launch(
        launch(harness, "byoi-t-2-1", harness.seed_image("web-w", "w", {}, 1))
    )

    ok = harness.provider.run_script(server, Script("t", 'echo "hello $WHO"', {"WHO": "byoi"}))
    bad = harness.provider.run_script(server, Script("t", "echo failing >&2; exit 4"))

    assert ok.ok and ok.output.strip() == "hello byoi"
    assert bad.exit_code == 4 and "failing" in bad.output


def test_register_deregister_and_terminate(harness: Harness) -> None:
    server = harness.provider.launch(
        launch(harness, "byoi-t-3-1", harness.seed_image("web-w", "w", {}, 1))
    )
    target = Target("web-lb", drain_seconds=0.2)

    harness.provider.register(server, target)
    assert harness.provider.target_members(target) == [server.id]
    started = time.monotonic()
    harness.provider.deregister(server, target)
    assert time.monotonic() - started >= 0.2  # the drain wait
    assert harness.provider.target_members(target) == []
    harness.provider.deregister(server, target)  # absent is fine
    harness.provider.terminate(server)
    harness.provider.terminate(server)  # already gone is fine

    assert harness.provider.list_servers({TAG_APP: "web"}) == []


def test_snapshot_publishes_a_new_image_into_the_family(harness: Harness) -> None:
    base = harness.seed_image("web-base", "web", {"ruby_version": "3.1.2"}, 40)
    server = harness.provider.launch(launch(harness, "byoi-t-4-1", base))

    image = harness.provider.snapshot(
        server, name="web-refreshed", family="web", versions={"ruby_version": "3.2.2"}
    )

    assert harness.provider.resolve_image("family:web").id == image.id
    assert dict(image.versions) == {"ruby_version": "3.2.2"}


def test_snapshot_records_provenance_and_an_unpublished_image_stays_outside_the_family(
    harness: Harness,
) -> None:
    base = harness.seed_image("web-base", "web", {"ruby_version": "3.1.2"}, 40)
    server = harness.provider.launch(launch(harness, "byoi-t-5-1", base))

    image = harness.provider.snapshot(
        server,
        name="web-candidate",
        family=None,
        versions={"ruby_version": "3.1.2"},
        tags={TAG_BAKED_FROM: base.id, TAG_BAKE_HASH: "0123456789abcdef"},
    )

    assert harness.provider.resolve_image("family:web").id == base.id
    found = harness.provider.resolve_image(image.id)
    assert found.family is None and dict(found.versions) == {"ruby_version": "3.1.2"}
    assert found.tags[TAG_BAKED_FROM] == base.id.lower()  # GCE labels are lower case
    assert found.tags[TAG_BAKE_HASH] == "0123456789abcdef"


def test_tag_server_adds_tags_a_listing_then_shows(harness: Harness) -> None:
    server = harness.provider.launch(
        launch(harness, "byoi-t-6-1", harness.seed_image("web-w", "w", {}, 1))
    )

    harness.provider.tag_server(server, {"byoi:version:ruby_version": "3.2.2"})
    harness.provider.tag_server(server, {"byoi:version:ruby_version": "3.3.0"})

    (listed,) = harness.provider.list_servers({TAG_KEY: "byoi-t-6-1"})
    shown = {k: v for k, v in listed.tags.items() if "ruby_version" in k}
    assert list(shown.values()) in (["3.3.0"], ["3-3-0"])  # GCE labels hold no dots
    assert listed.tags["byoi:run"] == "1"  # the other tags are kept


def test_delete_image_removes_it_and_absent_is_fine(harness: Harness) -> None:
    old = harness.seed_image("web-old", "web", {}, 40)
    new = harness.seed_image("web-new", "web", {}, 2)

    harness.provider.delete_image(old)
    harness.provider.delete_image(old)

    assert [i.id for i in harness.provider.list_images("web")] == [new.id]
    with pytest.raises(NotFound):
        harness.provider.resolve_image(old.id)


def test_calls_for_many_servers_answer_each_server_with_its_own_outcome(harness: Harness) -> None:
    provider = harness.provider
    if not isinstance(provider, Batches):
        pytest.skip("this adapter takes one server per call")
    image = harness.seed_image("web-m", "w", {}, 1)
    # The scripts asked for below: a cloud that runs them from boot (GCP) is given them here.
    first, second = (
        replace(launch(harness, f"byoi-t-5-{n}", image), scripts=(Script("t", "true"),))
        for n in (1, 2)
    )

    launched = provider.launch_all([first, second, first])  # the same key: the same server
    one, two, again = (outcome(o) for o in launched)
    assert one.id == again.id != two.id
    # A server that is gone: no such id, and no address to reach it by (DigitalOcean's SSH).
    gone_id = "i-0123456789abcdef0" if harness.provider.name == "aws" else "gone"
    gone = replace(two, id=gone_id, address=None)
    if harness.executes_scripts:
        # Both answer first: a new droplet's sshd may still be starting.
        warm = provider.run_script_all([(one, Script("t", "true")), (two, Script("t", "true"))])
        assert all(outcome(a).ok for a in warm)
        started = time.monotonic()
        results = provider.run_script_all(
            [
                (one, Script("t", "sleep 0.5; echo one")),
                (two, Script("t", "sleep 0.5; echo two >&2; exit 3")),
                (gone, Script("t", "echo never")),
            ]
        )
        assert time.monotonic() - started < 0.9  # at once, not one after the other
        ran, failed, missing = results
        assert not isinstance(ran, ProviderError) and ran.output.strip() == "one"
        assert not isinstance(failed, ProviderError) and failed.exit_code == 3
        assert "two" in failed.output
        assert isinstance(missing, NotFound)
    else:  # the emulator runs nothing, but answers each server
        answers = provider.run_script_all([(one, Script("t", "true")), (two, Script("t", "true"))])
        assert [a.exit_code for a in answers if not isinstance(a, ProviderError)] == [0, 0]
    target = Target("web-lb")
    assert provider.register_all([one, two], target) == [None, None]
    assert sorted(provider.target_members(target)) == sorted([one.id, two.id])
    measured = {f"{VERSION_TAG_PREFIX}ruby_version": "3.2.2"}
    if harness.provider.name == "aws":  # moto tags any id; EC2 refuses a call naming a gone one
        from tests.integration.moto_env import ec2_error, inject

        def refuse(request: Any) -> Any:
            body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
            gone_id = "InvalidInstanceID.NotFound", f"The instance ID '{gone.id}' does not exist"
            return ec2_error(*gone_id, 400) if gone.id in body else None

        inject(harness.provider.ec2, "CreateTags", refuse)  # type: ignore[attr-defined]
    tagged = provider.tag_all([(one, measured), (gone, measured), (two, measured)])
    assert tagged[0] is None and tagged[2] is None and isinstance(tagged[1], ProviderError)
    found = provider.list_servers(measured)
    assert sorted(s.id for s in found) == sorted([one.id, two.id])
