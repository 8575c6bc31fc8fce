"""Crash drill for rolls: `byoi serve` is SIGKILLed at each batch boundary of a roll of 4
servers in batches of 2, and restarted; the roll completes, the fleet has its size, on the new
image, with no orphan and no key used twice."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import IMAGE_FILES, World, make_world, today
from tests.e2e.slackbot import SLACK_CONFIG, serving
from tests.fakes.slack_api import FakeSlack

# Batch 1 surged (new in, old not yet out), between the batches, batch 2 mid-launch (the cloud
# has the server, byoi has not recorded it), batch 2 surged, and the roll's last boundary.
POINTS = [
    "roll_batch_surged:1",
    "roll_batch_done:1",
    "launched:5",
    "roll_batch_surged:2",
    "roll_batch_done:2",
]


def four_servers_behind(world: World) -> str:
    world.scale_and_approve("scale web 4")
    return world.provider.create_image(
        "web-new", IMAGE_FILES, family="web", created_at=world.clock()
    ).id


def state_of(root: Path, run_id: int) -> str:
    db = sqlite3.connect(root / "byoi.db")
    try:
        (state,) = db.execute("SELECT state FROM runs WHERE id = ?", [run_id]).fetchone()
        return str(state)
    finally:
        db.close()


def wait_terminal(root: Path, run_id: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = state_of(root, run_id)
        if state not in ("awaiting_approval", "approved", "running"):
            return state
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} is still {state_of(root, run_id)}")


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_each_batch_boundary_is_recovered(tmp_path: Path, point: str) -> None:
    world = make_world(tmp_path, SLACK_CONFIG, now=today())
    new_image = four_servers_behind(world)
    world.store.close()
    fake = FakeSlack().start()
    try:
        with serving(tmp_path, fake, {"BYOI_DRILL_KILL_AT": point}) as bot:
            bot.command("roll web --batch 2", user="UALICE")
            fake.wait_for(lambda: fake.sent("chat.postMessage"))
            with contextlib.suppress(ConnectionError):
                bot.click("run_approve", 2, "UBOB")
            bot.process.wait(60)
            assert bot.process.returncode == -9, bot.logs()
        with serving(tmp_path, fake, log_name="restart.log") as bot:
            state = wait_terminal(tmp_path, 2)
            log = bot.logs()
    finally:
        fake.stop()

    assert state == "succeeded", log
    servers = [json.loads(p.read_text()) for p in tmp_path.glob("local/servers/*/server.json")]
    live = [s for s in servers if s["state"] == "running"]
    assert len(live) == 4 and {s["image_id"] for s in live} == {new_image}
    assert max(Counter(s["tags"]["byoi:key"] for s in servers).values()) == 1
    members = json.loads((tmp_path / "local/targets/web-lb.json").read_text())["members"]
    assert sorted(members) == sorted(s["id"] for s in live)
    db = sqlite3.connect(tmp_path / "byoi.db")
    assert db.execute("SELECT count(*) FROM audit WHERE event = 'orphan'").fetchone() == (0,)
    db.close()
