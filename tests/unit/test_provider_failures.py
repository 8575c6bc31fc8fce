"""Capacity, quota and throttling: a sentence a person acts on; the provider's text is kept."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.domain import failures
from pipeline.errors import ProviderFailed
from providers.base import (
    Capacity,
    KeyMatch,
    LaunchRequest,
    LimitExceeded,
    NotFound,
    ProviderError,
    Server,
    ServerSpec,
    Throttled,
)
from providers.local import LocalProvider
from tests.conftest import Clock, World, make_world, world_around

RAW_CAPACITY = (
    "InsufficientInstanceCapacity: We currently do not have sufficient small capacity in the "
    "Availability Zone you requested (us-east-1a)."
)


class Failing(LocalProvider):
    """The local provider, failing launches or listings the way a cloud does."""

    launch_error: ProviderError | None = None
    list_error: ProviderError | None = None

    def launch(self, request: LaunchRequest) -> Server:
        if self.launch_error is not None:
            raise self.launch_error
        return super().launch(request)

    def list_servers(self, tags: dict[str, str]) -> list[Server]:
        if self.list_error is not None:
            raise self.list_error
        return super().list_servers(tags)

    def count_servers(self, tags: Mapping[str, str], keys: KeyMatch) -> int:
        if self.list_error is not None:  # a count is a listing's request, as a cloud sees it
            raise self.list_error
        return super().count_servers(tags, keys)


def failing_world(tmp_path: Path) -> tuple[World, Failing]:
    seeded = make_world(tmp_path)
    seeded.store.close()
    clock = Clock()
    provider = Failing(tmp_path / "local", clock=clock)
    return world_around(tmp_path, provider, clock), provider


def test_no_capacity_is_said_as_what_to_try_and_the_raw_text_is_audited(tmp_path: Path) -> None:
    world, provider = failing_world(tmp_path)
    provider.launch_error = Capacity(RAW_CAPACITY)

    run = world.scale_and_approve("scale web 1")

    (server,) = run.servers
    assert server.reason == (
        "local has no capacity for small in this zone right now. Try again in a few minutes, "
        "or choose another zone (availability_zone) or size in the manifest."
    )
    assert "InsufficientInstanceCapacity" not in (run.reason or "")
    audited = [e for e in world.store.audit_events(run.id) if e.event == "provider_error"]
    assert [e.detail for e in audited] == [RAW_CAPACITY]
    world.store.close()


def test_a_quota_is_said_as_a_quota(tmp_path: Path) -> None:
    world, provider = failing_world(tmp_path)
    provider.launch_error = LimitExceeded("VcpuLimitExceeded: You have requested more vCPU ...")

    run = world.scale_and_approve("scale web 1")

    reason = run.servers[0].reason or ""
    assert reason.startswith("local refused: an account quota or limit is reached")
    assert "VcpuLimitExceeded" not in reason
    world.store.close()


def test_throttling_while_planning_is_said_as_wait_and_retry(tmp_path: Path) -> None:
    world, provider = failing_world(tmp_path)
    provider.list_error = Throttled("RequestLimitExceeded: Request limit exceeded.")

    reply = world.say("scale web 2", expect=ProviderFailed)

    assert isinstance(reply, ProviderFailed)
    assert reply.message == (
        "local is throttling byoi's requests (too many at once). Wait a minute and try again, "
        "or lower max_parallel."
    )
    world.store.close()


def test_other_provider_errors_keep_their_own_words(tmp_path: Path) -> None:
    world, provider = failing_world(tmp_path)
    provider.list_error = NotFound("target group web-lb does not exist")

    reply = world.say("scale web 2", expect=ProviderFailed)

    assert isinstance(reply, ProviderFailed)
    assert reply.message == "local said: target group web-lb does not exist"
    world.store.close()


def test_digitalocean_capacity_names_the_region_not_a_zone() -> None:
    spec = ServerSpec(size="s-2vcpu-4gb", region="ams3")

    sentence = failures.explain(Capacity("Region is not available"), "digitalocean", spec)

    assert sentence == (
        "digitalocean has no capacity for s-2vcpu-4gb in ams3 right now. Try again in a few "
        "minutes, or choose another region or size in the manifest."
    )
    assert failures.is_explained(Capacity("x")) and not failures.is_explained(NotFound("x"))
