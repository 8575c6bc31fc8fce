"""Alerts from scans: one per finding, no duplicates, reminders, snooze, resolution."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pipeline.domain.alerts import AlertState
from pipeline.errors import Refused, UserError
from pipeline.services.replies import AlertsReply, RunReply
from providers.base import ImageState
from tests.conftest import IMAGE_FILES, START, World, config_text, make_world, today


def stale_world(world: World) -> None:
    """The family's image drifts from the manifest (ruby 3.1.2 vs 3.2.2) and is 40 days old."""
    world.provider.create_image(
        "web-old",
        IMAGE_FILES,
        family="web",
        versions={"ruby_version": "3.1.2", "operating_system": "ubuntu2204"},
        created_at=START - timedelta(days=2),
    )
    world.clock.advance(days=38)


def test_a_fresh_image_raises_no_alert(world: World) -> None:
    reply = world.service.views.scan(world.clock())

    assert reply.findings == 0
    assert not reply.changes
    assert world.store.alerts.unresolved() == []


def test_each_finding_becomes_one_alert_per_environment(world: World) -> None:
    stale_world(world)

    reply = world.service.views.scan(world.clock())

    found = sorted((a.env, a.finding, a.detail) for a in reply.changes.new)
    assert found == [
        ("production", "age", "40 days old (limit 30)"),
        ("production", "drift", "ruby_version 3.1.2 → 3.2.2"),
        ("staging", "age", "40 days old (limit 30)"),
        ("staging", "drift", "ruby_version 3.1.2 → 3.2.2"),
    ]
    assert all(a.image_name == "web-old" for a in reply.changes.new)


def test_a_second_scan_reminds_instead_of_duplicating(world: World) -> None:
    stale_world(world)
    world.service.views.scan(world.clock())
    world.clock.advance(days=1)

    again = world.service.views.scan(world.clock())

    assert again.changes.new == []
    assert len(again.changes.reminded) == 4
    assert len(world.store.alerts.unresolved()) == 4
    assert again.changes.reminded[0].detail == "41 days old (limit 30)"


def test_a_snoozed_alert_stays_silent_until_the_snooze_ends(world: World) -> None:
    stale_world(world)
    first = world.service.views.scan(world.clock()).changes.new[0]

    reply = world.say(f"snooze {first.id}", "UBOB")
    world.clock.advance(days=6)
    during = world.service.views.scan(world.clock())
    world.clock.advance(days=2)
    after = world.service.views.scan(world.clock())

    assert isinstance(reply, AlertsReply) and "snoozed until" in reply.message
    assert first.id not in {a.id for a in during.changes.reminded}
    assert len(during.changes.reminded) == 3
    assert first.id in {a.id for a in after.changes.reminded}
    assert world.store.alerts.get(first.id).state == AlertState.OPEN  # type: ignore[union-attr]


def test_only_operators_and_approvers_may_snooze(world: World) -> None:
    stale_world(world)
    first = world.service.views.scan(world.clock()).changes.new[0]

    reply = world.say(f"snooze {first.id}", "UMALLORY", expect=Refused)

    assert isinstance(reply, Refused)
    assert world.store.alerts.get(first.id).state == AlertState.OPEN  # type: ignore[union-attr]


def test_refreshing_the_image_resolves_its_alerts(world: World) -> None:
    stale_world(world)
    world.service.views.scan(world.clock())
    world.scale_and_approve("scale web 1")

    world.scale_and_approve("refresh web")
    reply = world.service.views.scan(world.clock())

    assert len(reply.changes.resolved) == 4
    (fleet,) = reply.changes.new  # the server still runs the old image
    assert fleet.finding == "fleet" and fleet.detail.endswith("→ roll")

    world.scale_and_approve("roll web")
    reply = world.service.views.scan(world.clock())

    assert [a.finding for a in reply.changes.resolved] == ["fleet"]
    staging_left = [a for a in world.store.alerts.unresolved() if a.env == "staging"]
    assert staging_left == []
    assert reply.findings == 0


def test_a_broken_listing_does_not_resolve_alerts(world: World) -> None:
    stale_world(world)
    world.service.views.scan(world.clock())
    for image in world.provider.list_images():
        (world.provider.root / "images" / image.id / "image.json").rename(
            world.provider.root / "images" / image.id / "gone.json"
        )

    reply = world.service.views.scan(world.clock())

    assert all(o.error for o in reply.observations)
    assert reply.changes.resolved == []
    assert len(world.store.alerts.unresolved()) == 4


def test_alerts_lists_what_is_unresolved(world: World) -> None:
    stale_world(world)
    world.service.views.scan(world.clock())

    reply = world.say("alerts web")

    assert isinstance(reply, AlertsReply)
    assert len(reply.alerts) == 4


def test_a_deprecated_image_is_refused_unless_chosen_explicitly(tmp_path: Path) -> None:
    world = make_world(tmp_path, config_text(image="web-base"))
    image = world.provider.resolve_image("web-base")
    world.provider.set_image_state(image.id, ImageState.DEPRECATED)

    implicit = world.say("scale web 1", expect=UserError)
    explicit = world.say(f"scale web 1 --image {image.id}")

    assert isinstance(implicit, UserError)
    assert implicit.message.startswith("Image web-base cannot be used: image is deprecated.")
    assert isinstance(explicit, RunReply) and explicit.run is not None
    assert "image is deprecated" in explicit.run.notes


def test_an_obsolete_image_is_always_refused(tmp_path: Path) -> None:
    world = make_world(tmp_path, config_text(image="web-base"))
    image = world.provider.resolve_image("web-base")
    world.provider.set_image_state(image.id, ImageState.OBSOLETE)

    reply = world.say(f"scale web 1 --image {image.id}", expect=UserError)

    assert isinstance(reply, UserError) and "image is obsolete" in reply.message


def test_a_family_whose_images_are_all_deprecated_says_so(world: World) -> None:
    image = world.provider.resolve_image("family:web")
    world.provider.set_image_state(image.id, ImageState.DEPRECATED)

    reply = world.say("scale web 1", expect=UserError)

    assert isinstance(reply, UserError)
    assert reply.message == (
        "local said: no ready image in family 'web'. `images web` lists the images it has."
    )


def test_byoi_scan_prints_the_report_and_exits_by_findings(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    world = make_world(tmp_path, now=today())
    world.store.close()

    def scan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "--config", str(tmp_path / "byoi.yml"), "scan", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    fresh = scan()
    world.provider.create_image(
        "web-old",
        IMAGE_FILES,
        family="web",
        versions={"ruby_version": "2.7.0"},
        created_at=world.clock(),
    )
    stale = scan("--json")

    assert fresh.returncode == 0, fresh.stderr
    assert "web/staging" in fresh.stdout and "fresh" in fresh.stdout
    assert stale.returncode == 1
    report = json.loads(stale.stdout)
    staging = next(e for e in report["environments"] if e["env"] == "staging")
    assert staging["image"]["name"] == "web-old"
    assert {"kind": "drift", "detail": "ruby_version 2.7.0 → 3.2.2"} in staging["findings"]
    assert report["alerts"]["new"] == 4


def test_hourly_checks_remind_each_alert_once_a_day(world: World) -> None:
    stale_world(world)
    opened = world.service.views.scan(world.clock()).changes.new

    reminded = []
    for _ in range(48):
        world.clock.advance(hours=1)
        reminded.append(len(world.service.views.scan(world.clock()).changes.reminded))

    assert len(opened) == 4
    assert reminded[22] == 0 and reminded[23] == 4  # the first reminder, a day after the card
    assert sum(reminded) == 8  # once a day per alert, not once per check
