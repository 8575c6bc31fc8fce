"""Crash drill: `byoi serve` on AWS (moto server), GCP (the Compute fake) and the local provider
(servers in a cohort) is SIGKILLed at step boundaries of a 3-server scale-up and restarted; every
run ends, no server is orphaned or created twice."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import days_ago
from tests.e2e.slackbot import serving
from tests.fakes.slack_api import FakeSlack, text_of
from tests.integration.moto_env import client
from tests.integration.test_aws_runs import aws_world, healthy_targets

POINTS = ["clone_started:2", "launched:2", "scrub_started:2", "deploy_started:2", "register_done:2"]


def all_instances() -> list[dict[str, Any]]:
    pages = client("ec2").describe_instances(Filters=[{"Name": "tag:byoi:app", "Values": ["web"]}])
    return [i for r in pages["Reservations"] for i in r["Instances"]]


def run_row(root: Path) -> tuple[str, list[tuple[str, str | None]]]:
    db = sqlite3.connect(root / "byoi.db")
    try:
        (state,) = db.execute("SELECT state FROM runs WHERE id = 1").fetchone()
        servers = db.execute(
            "SELECT status, provider_id FROM servers WHERE run_id = 1 ORDER BY slot"
        ).fetchall()
    finally:
        db.close()
    return state, servers


def wait_terminal(root: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, _ = run_row(root)
        if state not in ("awaiting_approval", "approved", "running"):
            return str(state)
        time.sleep(0.2)
    raise AssertionError(f"run 1 is still {run_row(root)}")


def killed_at(root: Path, fake: FakeSlack, point: str) -> tuple[int | None, str]:
    """`byoi serve` with the drill set at ``point``: a 3-server scale-up, approved, during
    which byoi SIGKILLs itself at the point. Returns its exit code and its log."""
    with serving(root, fake, {"BYOI_DRILL_KILL_AT": point}) as bot:
        bot.command("scale web 3", user="UALICE")
        fake.wait_for(lambda: fake.sent("chat.postMessage"))
        with contextlib.suppress(ConnectionError):  # the drill may kill byoi mid-answer
            bot.click("run_approve", 1, "UBOB")
        bot.process.wait(60)
        return bot.process.returncode, bot.logs()


def killed_and_restarted(root: Path, fake: FakeSlack, point: str) -> str:
    """`byoi serve` killed at ``point`` (see ``killed_at``), then started again: how run 1
    ended."""
    code, log = killed_at(root, fake, point)
    assert code == -9, log
    with serving(root, fake, log_name="restart.log"):
        return wait_terminal(root)


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_each_step_boundary_is_recovered(aws: str, tmp_path: Path, point: str) -> None:
    world = aws_world(tmp_path)
    world.store.close()
    fake = FakeSlack().start()
    try:
        code, log = killed_at(tmp_path, fake, point)
        assert code == -9, log
        with serving(tmp_path, fake, log_name="restart.log"):
            state = wait_terminal(tmp_path)
            fake.wait_for(lambda: any("succeeded" in text_of(c) for c in fake.sent("chat.update")))
    finally:
        fake.stop()

    assert state == "succeeded"
    _, servers = run_row(tmp_path)
    accounted = sorted(str(p) for status, p in servers if status == "done")
    instances = all_instances()
    live = sorted(i["InstanceId"] for i in instances if i["State"]["Name"] == "running")
    assert live == accounted and len(live) == 3
    keys = Counter({t["Key"]: t["Value"] for t in i["Tags"]}["byoi:key"] for i in instances)
    assert max(keys.values()) == 1  # no key made two instances
    for instance in instances:  # and each was launched with its key as the ClientToken
        assert (
            instance["ClientToken"] == {t["Key"]: t["Value"] for t in instance["Tags"]}["byoi:key"]
        )
    assert healthy_targets() == live
    card = fake.sent("chat.postMessage")[0].ts  # the thread's phase replies are edited too
    final = [text_of(c) for c in fake.sent("chat.update") if c.ts == card][-1]
    assert "succeeded" in final and final.count(":white_check_mark: `i-") == 3


def test_the_reconciler_terminates_an_unaccounted_tagged_instance(aws: str, tmp_path: Path) -> None:
    world = aws_world(tmp_path)
    install_id = world.store.install_id
    image = world.provider.resolve_image("family:web")
    stray = client("ec2").run_instances(
        ImageId=image.id,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": "byoi:app", "Value": "web"},
                    {"Key": "byoi:env", "Value": "production"},
                    {"Key": "byoi:key", "Value": f"byoi-{install_id}-99-1"},
                ],
            }
        ],
    )["Instances"][0]["InstanceId"]
    mine = client("ec2").run_instances(
        ImageId=image.id,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": "byoi:app", "Value": "web"},
                    {"Key": "Name", "Value": "hand-made"},
                ],
            }
        ],
    )["Instances"][0]["InstanceId"]
    world.store.close()
    fake = FakeSlack().start()
    try:
        with serving(tmp_path, fake) as bot:
            time.sleep(0.5)
            log = bot.logs()
    finally:
        fake.stop()

    states = {i["InstanceId"]: i["State"]["Name"] for i in all_instances()}
    assert states[stray] == "terminated"
    assert states[mine] == "running"
    assert f"reconciler: {stray}" in log
    db = sqlite3.connect(tmp_path / "byoi.db")
    assert db.execute(
        "SELECT count(*) FROM audit WHERE event = 'orphan' AND detail LIKE ?", [f"%{stray}%"]
    ).fetchone() == (1,)


@pytest.mark.parametrize("point", ["launched:2", "deploy_started:2", "register_done:2"])
def test_a_kill_on_gcp_is_recovered_too(tmp_path: Path, point: str) -> None:
    from providers.codec import describe_versions
    from tests.fakes.compute import FakeCompute
    from tests.integration.test_gcp_runs import CONFIG, MANIFEST, ZONE

    compute = FakeCompute().start()
    compute.add_group(ZONE, "web-lb")
    compute.add_image("web-base-v1", "web", {}, days_ago(9))
    compute.images["web-base-v1"]["description"] = describe_versions(
        {"docker_version": "17.06.2-ce", "ruby_version": "3.2.2"}
    )
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    (tmp_path / "byoi.yml").write_text(CONFIG.format(url=compute.url))
    fake = FakeSlack().start()
    try:
        state = killed_and_restarted(tmp_path, fake, point)
    finally:
        fake.stop()
        compute.stop()

    assert state == "succeeded"
    _, servers = run_row(tmp_path)
    accounted = sorted(str(p).split("/")[-1] for status, p in servers if status == "done")
    assert sorted(name for _, name in compute.instances) == accounted and len(accounted) == 3
    inserts = compute.calls("POST", r"/zones/[^/]+/instances$")
    assert len({r.query["requestId"] for r in inserts}) == 3  # one request id per server
    members = sorted(m.rsplit("/", 1)[-1] for m in compute.groups[(ZONE, "web-lb")])
    assert members == accounted


@pytest.mark.parametrize(
    "point", ["launched:2", "scrub_started:3", "deploy_done:1", "register_started:2"]
)
def test_a_kill_in_a_cohort_on_the_local_provider_is_recovered(tmp_path: Path, point: str) -> None:
    """The local provider takes many servers per call: the three servers move together (one
    thread, one transaction per step), and a kill at a boundary is recovered as for one."""
    from providers.base import TAG_APP, Target
    from providers.local import LocalProvider
    from tests.conftest import make_world, today
    from tests.e2e.slackbot import SLACK_CONFIG

    make_world(tmp_path, SLACK_CONFIG, now=today()).store.close()
    fake = FakeSlack().start()
    try:
        state = killed_and_restarted(tmp_path, fake, point)
    finally:
        fake.stop()

    assert state == "succeeded"
    _, servers = run_row(tmp_path)
    accounted = sorted(str(p) for status, p in servers if status == "done")
    provider = LocalProvider(tmp_path / "local")
    live = sorted(s.id for s in provider.list_servers({TAG_APP: "web"}))
    on_disk = sorted(p.parent.name for p in (tmp_path / "local" / "servers").glob("*/server.json"))
    assert live == accounted == on_disk and len(live) == 3
    assert provider.target_members(Target("web-lb")) == live
    provider.close()
    db = sqlite3.connect(tmp_path / "byoi.db")
    (last,) = db.execute(
        "SELECT detail FROM audit WHERE event = 'register_started' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    db.close()
    assert json.loads(last)["slots"] == [1, 2, 3]  # the restarted `byoi serve` took them together


@pytest.mark.parametrize("strategy", ["parallel", "serial"])
def test_a_kill_during_a_rollback_finishes_it_on_restart_and_keeps_the_reason(
    tmp_path: Path, strategy: str
) -> None:
    from providers.base import TAG_APP
    from providers.local import LocalProvider
    from tests.conftest import config_text, make_world, today

    # Slot 2's deploy fails the first time only: a restart that redid the step would succeed.
    once = tmp_path / "failed-once"
    deploy = (
        f'case "$BYOI_SERVER" in *-2) if [ ! -e {once} ]; then touch {once}; '
        'echo "migrations failed: db unreachable" >&2; exit 3; fi;; esac; '
        'mkdir -p current && echo "$BYOI_RELEASE" > current/VERSION'
    )
    config = config_text(
        operators='["W111", "UALICE"]',
        approvers='["UBOB"]',
        deploy_command=repr(deploy),
        max_parallel="3" if strategy == "parallel" else "1",
    )
    make_world(tmp_path, config, now=today()).store.close()
    fake = FakeSlack().start()
    try:
        with serving(tmp_path, fake, {"BYOI_DRILL_KILL_AT": "failing:2"}) as bot:
            bot.command(f"scale web 3 --strategy {strategy}", user="UALICE")
            fake.wait_for(lambda: fake.sent("chat.postMessage"))
            with contextlib.suppress(ConnectionError):
                bot.click("run_approve", 1, "UBOB")
            bot.process.wait(60)
            assert bot.process.returncode == -9, bot.logs()
        with serving(tmp_path, fake, log_name="restart.log"):
            state = wait_terminal(tmp_path)
    finally:
        fake.stop()

    db = sqlite3.connect(tmp_path / "byoi.db")
    failed = db.execute("SELECT status, reason, cleanup FROM servers WHERE slot = 2").fetchone()
    db.close()
    assert state == "partially_failed"
    assert failed[0] == "failed"
    assert (failed[1] or "").startswith("deploy exited 3: ")  # not what a relaunch would say
    assert (failed[1] or "").endswith("migrations failed: db unreachable")
    assert (failed[2] or "").startswith("rolled back (terminated byoi-")
    provider = LocalProvider(tmp_path / "local")
    live = {s.id for s in provider.list_servers({TAG_APP: "web"})}
    provider.close()
    rootfs = {p.parent.name for p in (tmp_path / "local" / "servers").glob("*/rootfs")}
    assert rootfs == live and len(live) == (2 if strategy == "parallel" else 1)
