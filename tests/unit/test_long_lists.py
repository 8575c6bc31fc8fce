"""Sixty apps: App Home, `status` and `images` say what they left out and how to see it."""

from __future__ import annotations

import json
from pathlib import Path

from slack_sdk.models.views import View

from bot.shell import text
from bot.slack.blocks import messages
from bot.slack.blocks.kit import MAX_BLOCKS, MAX_SECTION
from pipeline.services.replies import ImagesReply, StatusReply
from tests.conftest import World, config_text, make_world

APPS = 60


def sixty_apps(tmp_path: Path) -> World:
    apps = "".join(
        f"  app{n:02d}:\n    manifest: manifest.yml\n    provider: local\n"
        f"    image: family:web\n    approvers: [UBOB]\n    deploy_command: 'true'\n"
        for n in range(APPS)
    )
    return make_world(tmp_path, config_text() + apps)


def block_texts(blocks: list[dict[str, object]]) -> list[str]:
    return [json.dumps(b, ensure_ascii=False) for b in blocks]


def test_status_lists_what_fits_and_names_the_rest(tmp_path: Path) -> None:
    world = sixty_apps(tmp_path)
    reply = world.say("status")
    assert isinstance(reply, StatusReply)
    total = len(reply.envs)  # two environments per app

    _, blocks = messages.reply_blocks(reply, world.clock())

    assert len(blocks) == MAX_BLOCKS
    last = blocks[-1]["text"]["text"]  # type: ignore[index]
    assert last.startswith(f"…and {total - (MAX_BLOCKS - 1)} more; `/byoi status <app>` shows")
    assert "app59/production" in last
    assert len(last) <= MAX_SECTION
    world.store.close()


def test_images_lists_what_fits_and_names_the_rest(tmp_path: Path) -> None:
    world = sixty_apps(tmp_path)
    reply = world.say("images")
    assert isinstance(reply, ImagesReply)

    _, blocks = messages.reply_blocks(reply, world.clock())

    assert len(blocks) == MAX_BLOCKS
    shown = sum("family:web" in t for t in block_texts(blocks[:-1]))
    left = int(blocks[-1]["text"]["text"].split()[1])  # type: ignore[index]
    assert shown + left == len(reply.images)
    assert "`/byoi images <app>` shows one app" in blocks[-1]["text"]["text"]  # type: ignore[index]
    world.store.close()


def test_the_app_home_with_sixty_apps_says_how_to_see_the_rest(tmp_path: Path) -> None:
    world = sixty_apps(tmp_path)
    status, images = world.say("status"), world.say("images")

    view = messages.home_view(status, images)  # type: ignore[arg-type]

    View(**view).validate_json()
    assert len(view["blocks"]) <= 100
    texts = block_texts(view["blocks"])
    assert sum("more; `/byoi status <app>`" in t for t in texts) == 1
    assert sum("more; `/byoi images <app>`" in t for t in texts) == 1
    world.store.close()


def test_one_app_shows_every_environment(tmp_path: Path) -> None:
    world = sixty_apps(tmp_path)

    _, blocks = messages.reply_blocks(world.say("status app59"), world.clock())  # type: ignore[arg-type]

    assert not any("more;" in t for t in block_texts(blocks))
    assert "app59/staging" in json.dumps(blocks) and "app59/production" in json.dumps(blocks)
    assert "app59/production" in text.render(world.say("status"))  # type: ignore[arg-type]
    world.store.close()
