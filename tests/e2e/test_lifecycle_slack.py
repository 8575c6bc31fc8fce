"""Rolls over Slack: signed clicks on the canary's Continue and Roll back, on local and AWS."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from tests.conftest import IMAGE_FILES, World, days_ago
from tests.e2e.slackbot import Bot, running_bot, serving
from tests.e2e.test_slack_http import wait_card
from tests.fakes.slack_api import FakeSlack, text_of
from tests.integration.moto_env import client, seed_ami
from tests.integration.test_aws_runs import aws_world, healthy_targets


def two_servers_behind(world: World) -> None:
    """Two servers on the old image, then a newer image in the family."""
    world.scale_and_approve("scale web 2")
    world.provider.create_image("web-new", IMAGE_FILES, family="web", created_at=world.clock())


def canary_paused(bot: Bot, run_id: int) -> str:
    bot.command("roll web --canary --batch 2", user="UALICE")
    wait_card(bot, f"Run {run_id}")
    bot.click("run_approve", run_id, "UBOB")
    return wait_card(bot, "paused after the canary")


def batch_reply(bot: Bot, needle: str) -> str:
    """The thread reply of the roll's first batch once it (as posted or edited) has ``needle``."""
    return str(
        bot.fake.wait_for(
            lambda: next(
                (
                    c.params["text"]
                    for c in [*bot.fake.sent("chat.postMessage"), *bot.fake.sent("chat.update")]
                    if "batch 1/2" in str(c.params.get("text")) and needle in c.params["text"]
                ),
                None,
            )
        )
    )


def test_a_canary_roll_pauses_and_continue_finishes_it(tmp_path: Path) -> None:
    with running_bot(tmp_path, before=two_servers_behind) as bot:
        card = canary_paused(bot, 2)
        assert "roll_continue" in card and "roll_back" in card
        assert "ruby_version 3.2.2" in card and "batch 1 of 2 · old 2 → new 1 (of 2)" in card
        edits = [str(c.params.get("text")) for c in bot.fake.sent("chat.update")]
        notified = [t for t in edits if t.startswith("Run 2: roll ")]  # the card's, not replies'
        assert notified and notified[-1].endswith("(paused after the canary)"), notified
        paused = batch_reply(bot, "paused")
        assert paused == (
            ":double_vertical_bar: batch 1/2 · canary · 1/1 new up · 0/1 old removed · "
            "paused: waiting for Continue or Roll back"
        )

        status, _, seconds = bot.click("roll_continue", 2, "UBOB")
        assert status == 200 and seconds < 3

        final = wait_card(bot, "succeeded")
        assert "roll_continue" not in final and "old 0 → new 2 (of 2)" in final
        done = batch_reply(bot, ":white_check_mark:")
        assert done.startswith(":white_check_mark: batch 1/2 · canary · 1/1 new up · 1/1 old")
    servers = list((tmp_path / "local/servers").glob("*/server.json"))
    live = [json.loads(p.read_text()) for p in servers if (p.parent / "rootfs").exists()]
    images = [json.loads(p.read_text()) for p in (tmp_path / "local/images").glob("*/image.json")]
    (new,) = [i["id"] for i in images if i["name"] == "web-new"]
    assert len(live) == 2 and {s["image_id"] for s in live} == {new}


def test_roll_back_on_a_paused_canary_removes_it_and_keeps_the_old_servers(
    tmp_path: Path,
) -> None:
    with running_bot(tmp_path, before=two_servers_behind) as bot:
        canary_paused(bot, 2)

        bot.click("roll_back", 2, "UBOB")

        final = wait_card(bot, "cancelled")
        assert "roll_continue" not in final
    live = sorted(p.parent.name for p in (tmp_path / "local/servers").glob("*/rootfs"))
    assert live == sorted(p.parent.name for p in (tmp_path / "local/servers").glob("*-1-*/rootfs"))
    assert len(live) == 2


@pytest.mark.slow
def test_a_canary_roll_on_aws_continues_over_a_signed_click(aws: str, tmp_path: Path) -> None:
    world = aws_world(tmp_path)
    world.scale_and_approve("scale web 2")
    old = sorted(i["InstanceId"] for i in _running())
    world.clock.advance(seconds=2)
    seed_ami("web-base-v2", "web", {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"})
    world.store.close()
    fake = FakeSlack().start()
    try:
        with serving(tmp_path, fake) as bot:
            canary_paused(bot, 2)
            assert len(_running()) == 3 and len(healthy_targets()) == 3  # size + 1, never less
            bot.click("roll_continue", 2, "UBOB")
            fake.wait_for(
                lambda: any("succeeded" in text_of(c) for c in fake.sent("chat.update")), 90
            )
    finally:
        fake.stop()
    live = sorted(i["InstanceId"] for i in _running())
    assert len(live) == 2 and not set(live) & set(old)
    assert healthy_targets() == live


def _running() -> list[dict[str, object]]:
    with contextlib.suppress(KeyError):
        pages = client("ec2").describe_instances(
            Filters=[
                {"Name": "tag:byoi:env", "Values": ["production"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
        return [i for r in pages["Reservations"] for i in r["Instances"]]
    return []


@pytest.mark.slow
def test_a_canary_roll_on_gcp_continues_over_a_signed_click(tmp_path: Path) -> None:
    from tests.fakes.compute import FakeCompute
    from tests.integration.test_gcp_runs import CONFIG, MANIFEST, PROBES, ZONE

    compute = FakeCompute().start()
    compute.answer_step("probe", PROBES)
    compute.add_group(ZONE, "web-lb")
    compute.add_image("web-base-v1", "web", {}, days_ago(9))
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    (tmp_path / "byoi.yml").write_text(CONFIG.format(url=compute.url))
    fake = FakeSlack().start()
    try:
        with serving(tmp_path, fake) as bot:
            bot.command("scale web 2", user="UALICE")
            wait_card(bot, "Run 1")
            bot.click("run_approve", 1, "UBOB")
            wait_card(bot, "succeeded")
            old = sorted(name for _, name in compute.instances)
            compute.add_image("web-base-v2", "web", {}, days_ago(2))
            canary_paused(bot, 2)
            assert len(compute.instances) == 3 and len(compute.groups[(ZONE, "web-lb")]) == 3
            bot.click("roll_continue", 2, "UBOB")
            fake.wait_for(
                lambda: any(
                    "Run 2: roll" in text_of(c) and "succeeded" in text_of(c)
                    for c in fake.sent("chat.update")
                ),
                60,
            )
    finally:
        fake.stop()
        compute.stop()
    live = sorted(name for _, name in compute.instances)
    assert len(live) == 2 and not set(live) & set(old)
    assert all(i["labels"]["byoi-image"] == "web-base-v2" for i in compute.instances.values())
    assert sorted(m.rsplit("/", 1)[-1] for m in compute.groups[(ZONE, "web-lb")]) == live


def test_the_roll_offer_after_a_refresh_plans_a_roll_onto_the_new_image(tmp_path: Path) -> None:
    def two_servers(world: World) -> None:
        world.scale_and_approve("scale web 2")

    with running_bot(tmp_path, before=two_servers) as bot:
        bot.command("refresh web", user="UALICE")
        wait_card(bot, "Run 2")
        bot.click("run_approve", 2, "UBOB")
        bot.fake.wait_for(
            lambda: [c for c in bot.fake.sent("chat.postMessage") if "roll_offer" in text_of(c)]
        )

        bot.click("roll_offer", 2, "UALICE")

        card = wait_card(bot, "Run 3")
        assert "roll *web/staging*" in card and "run_approve" in card
        assert "web-staging-" in card  # the image the refresh made
