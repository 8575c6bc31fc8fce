"""Crash drill on DigitalOcean: `byoi serve` is SIGKILLed between creating a droplet and
recording it, then restarted; the run ends with no second droplet for a key."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import IMAGE_FILES, today
from tests.e2e.slackbot import serving
from tests.e2e.test_crash_drill import run_row, wait_terminal
from tests.fakes.digitalocean import FakeDigitalOcean
from tests.fakes.digitalocean_setup import provider_for, seed_image
from tests.fakes.slack_api import FakeSlack
from tests.fakes.sshd import FakeHosts
from tests.integration.test_digitalocean_runs import write_config


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[FakeDigitalOcean]:
    hosts = FakeHosts(tmp_path / "droplets")
    fake = FakeDigitalOcean(tmp_path / "do", hosts).start()
    fake.add_balancer("web-lb")
    yield fake
    fake.stop()
    hosts.close()


@pytest.mark.parametrize("point", ["launched:2"])
def test_a_kill_on_digitalocean_is_resumed_without_a_second_droplet(
    cloud: FakeDigitalOcean, tmp_path: Path, point: str
) -> None:
    write_config(tmp_path, cloud)
    provider = provider_for(cloud, tmp_path / "unused-ssh")
    created = today() - timedelta(days=3)
    seed_image(
        cloud, provider, "web-base-v1", "web", {"ruby_version": "3.2.2"}, created, IMAGE_FILES
    )
    env = {"DIGITALOCEAN_TOKEN": cloud.token}
    slack = FakeSlack().start()
    try:
        with serving(tmp_path, slack, {**env, "BYOI_DRILL_KILL_AT": point}) as bot:
            bot.command("scale web 3", user="UALICE")
            slack.wait_for(lambda: slack.sent("chat.postMessage"))
            with contextlib.suppress(ConnectionError):  # the drill may kill byoi mid-answer
                bot.click("run_approve", 1, "UBOB")
            bot.process.wait(60)
            assert bot.process.returncode == -9, bot.logs()
        with serving(tmp_path, slack, env, log_name="restart.log") as bot:
            state = wait_terminal(tmp_path)
            log = bot.logs()
    finally:
        slack.stop()

    assert state == "succeeded", log
    _, servers = run_row(tmp_path)
    accounted = sorted(str(p) for status, p in servers if status == "done")
    assert sorted(str(d) for d in cloud.droplets) == accounted and len(accounted) == 3
    keys = Counter(
        t for d in cloud.droplets.values() for t in d["tags"] if t.startswith("byoi:key:")
    )
    assert len(keys) == 3 and max(keys.values()) == 1
    assert len(cloud.calls("POST", r"^/v2/droplets$")) == 3  # the resumed slot created nothing
    (lb,) = cloud.balancers.values()
    assert sorted(str(d) for d in lb["droplet_ids"]) == accounted
    assert cloud.hosts is not None
    for droplet_id in cloud.droplets:
        root = cloud.hosts.hosts[droplet_id].root
        assert (root / "srv/app/current/VERSION").read_text() == "v2\n"
    assert len(cloud.keys) == 1  # the restarted byoi reused its key pair
    assert (tmp_path / "ssh" / "id_ed25519").exists()  # providers.digitalocean.ssh_dir
