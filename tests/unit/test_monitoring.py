"""Health and metrics pieces on their own: the database check, provider errors, bounded labels."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from bot.health import Health
from bot.metrics import Metrics, ScrapeSource, age_label
from pipeline.services.display import Display
from pipeline.state.store import Store
from providers.base import (
    Batches,
    CountsServers,
    KeyMatch,
    NotFound,
    Script,
    Server,
    ServerState,
)
from tests.conftest import START, World


def call(health: Health) -> tuple[str, dict[str, object]]:
    seen: list[str] = []
    body = b"".join(health({}, lambda status, headers: seen.append(status)))
    return seen[0], json.loads(body)


def test_healthz_is_ok_while_the_database_takes_writes(tmp_path: Path) -> None:
    store = Store(tmp_path / "byoi.db")
    try:
        assert call(Health(store)) == ("200 OK", {"ok": True})
    finally:
        store.close()


def test_healthz_is_unhealthy_when_the_database_cannot_be_written(tmp_path: Path) -> None:
    store = Store(tmp_path / "byoi.db")
    store.close()

    status, body = call(Health(store))

    assert status.startswith("503")
    assert "the database is not writable" in str(body["problems"])


def test_healthz_turns_unhealthy_only_after_the_socket_is_down_past_the_limit(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "byoi.db")
    up = [True]
    health = Health(store, socket_down_limit=0.3)
    health.watch_socket(lambda: up[0], every=3600)
    try:
        assert call(health)[0] == "200 OK"
        up[0] = False
        assert call(health)[0] == "200 OK"  # a short drop is fine: the SDK reconnects
        deadline = time.monotonic() + 10
        while (answer := call(health))[0] == "200 OK" and time.monotonic() < deadline:
            time.sleep(0.05)
        status, body = answer
        assert status.startswith("503") and "WebSocket" in str(body["problems"])
    finally:
        health.stop()
        store.close()


def test_provider_errors_are_counted_by_kind(world: World) -> None:
    metrics = Metrics()
    provider = metrics.wrap_provider(world.provider)

    with pytest.raises(NotFound):
        provider.resolve_image("no-such-image")

    text = generate_latest(metrics.registry).decode()
    assert 'byoi_provider_errors_total{kind="NotFound",provider="local"} 1.0' in text


def test_a_metered_provider_takes_many_servers_per_call_if_its_provider_does(
    world: World,
) -> None:
    metrics = Metrics()
    provider = metrics.wrap_provider(world.provider)
    gone = Server("byoi-x-1-1", "byoi-x-1-1", "img", ServerState.RUNNING, START)

    assert isinstance(provider, Batches) and isinstance(provider, CountsServers)
    (missing,) = provider.run_script_all([(gone, Script("t", "true"))])
    assert isinstance(missing, NotFound)  # an item's error is its own, and counted
    assert provider.count_servers({}, KeyMatch("byoi-")) == 0
    text = generate_latest(metrics.registry).decode()
    assert 'byoi_provider_errors_total{kind="NotFound",provider="local"} 1.0' in text

    class OneAtATime:  # an adapter that takes one server per call stays one
        name = "one"

    assert not isinstance(metrics.wrap_provider(OneAtATime()), Batches)  # type: ignore[arg-type]


def test_runs_and_fleet_are_read_from_the_store_and_providers(world: World) -> None:
    metrics = Metrics()
    metrics.watch(ScrapeSource(world.config, Display(world.store), world.service, world.clock))
    world.scale_and_approve("scale web 2")
    world.say("scale web 5 --env production")  # waits for approval

    text = generate_latest(metrics.registry).decode()

    assert 'byoi_runs_total{kind="scale_up",outcome="succeeded"} 1.0' in text
    assert 'byoi_runs_active{kind="scale_up",state="awaiting_approval"} 1.0' in text
    assert "byoi_approvals_waiting 1.0" in text
    assert 'byoi_servers{app="web",env="staging",image_age="0-7d"} 2.0' in text
    assert 'byoi_alerts_open{app="web"} 0.0' in text


def test_the_last_scan_and_open_alerts_are_read_through_the_display(world: World) -> None:
    metrics = Metrics()
    metrics.watch(ScrapeSource(world.config, Display(world.store), world.service, world.clock))
    assert "byoi_last_scan_timestamp_seconds" not in generate_latest(metrics.registry).decode()

    world.provider.create_image("web-old", {}, family="web", created_at=world.clock())
    world.service.views.scan(world.clock())
    text = generate_latest(metrics.registry).decode()

    scanned = next(line for line in text.splitlines() if line.startswith("byoi_last_scan"))
    assert float(scanned.split()[1]) == world.clock().timestamp()
    open_alerts = len(Display(world.store).unresolved_alerts())
    assert open_alerts > 0
    assert f'byoi_alerts_open{{app="web"}} {open_alerts:.1f}' in text


@pytest.mark.parametrize(
    ("days", "label"), [(None, "unknown"), (0, "0-7d"), (7, "7-30d"), (45, "30-90d"), (400, "90d+")]
)
def test_image_age_is_a_handful_of_buckets(days: int | None, label: str) -> None:
    assert age_label(days) == label
