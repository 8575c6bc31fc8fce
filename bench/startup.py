"""`byoi serve` start-up time (process start to answering /healthz) and idle RSS.

Two configurations: AWS only, and AWS plus a GCP app. moto's server stands in for AWS, the
in-repo Compute fake for GCP, the fake Slack Web API for Slack, so start-up does its real work
(configuration, database, providers, reconciliation, Slack's auth.test). Medians of ``ROUNDS``.

Then history: the same start-up on the local provider with ``--servers`` live servers, once
with a database of ``--runs`` finished runs (bench/history.py) and once with an empty one, in
alternating rounds; the reconciler lists the same servers both times (the empty database's
install id matches none of them). Target: ready time and RSS each within 1.2x.
Usage: .venv/bin/python -m bench.startup [--runs 10000] [--servers 1000] [--no-sdk]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import history
from providers.local import LocalProvider
from tests.e2e.slackbot import SECRET, TOKEN, free_port
from tests.fakes.compute import FakeCompute
from tests.fakes.slack_api import FakeSlack

ROUNDS = 5
REPO = Path(__file__).resolve().parents[1]
MANIFEST_AWS = "production:\n  rails:\n    server:\n      vendor: aws\n      size: t3.small\n"
MANIFEST_GCP = "production:\n  rails:\n    server:\n      vendor: googlecloud\n"
APP = """\
  {name}:
    manifest: {manifest}
    image: family:{name}
    approvers: [UBOB]
    deploy_command: 'true'
"""


def write(root: Path, with_gcp: bool, compute: FakeCompute) -> Path:
    (root / "aws.yml").write_text(MANIFEST_AWS)
    (root / "gcp.yml").write_text(MANIFEST_GCP)
    text = "database: byoi.db\nproviders:\n  aws:\n    region: us-east-1\n"
    if with_gcp:
        text += (
            f"  gcp:\n    project: {compute.project}\n    api_endpoint: {compute.url}\n"
            "    credentials: anonymous\n"
        )
    text += "apps:\n" + APP.format(name="api", manifest="aws.yml")
    if with_gcp:
        text += APP.format(name="web", manifest="gcp.yml")
    (root / "byoi.yml").write_text(text)
    return root / "byoi.yml"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_once(config: Path, env: dict[str, str]) -> tuple[float, float]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        cwd=REPO,
        env={**env, "PORT": str(port), "BYOI_CONFIG": str(config)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    ready = time.perf_counter() - started
                    break
            except OSError:
                if process.poll() is not None:
                    raise SystemExit("byoi serve exited during start-up") from None
                time.sleep(0.005)
        time.sleep(2)  # idle
        return ready, rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(30)


def sdk_table(slack: FakeSlack) -> None:
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    compute = FakeCompute().start()
    env = {
        **slack_env(slack),
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    print(f"byoi serve start-up, median of {ROUNDS}")
    print(f"{'configuration':<16} {'ready s':>8} {'RSS MB':>7}")
    try:
        for label, with_gcp in (("AWS only", False), ("AWS + GCP", True)):
            with tempfile.TemporaryDirectory() as tmp:
                config = write(Path(tmp), with_gcp, compute)
                results = [start_once(config, env) for _ in range(ROUNDS)]
            ready = statistics.median(r[0] for r in results)
            rss = statistics.median(r[1] for r in results)
            print(f"{label:<16} {ready:8.2f} {rss:7.1f}")
    finally:
        compute.stop()
        moto.stop()


def slack_env(slack: FakeSlack) -> dict[str, str]:
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "BYOI_HOST": "127.0.0.1",
    }
    env.pop("SLACK_APP_TOKEN", None)
    return env


def history_table(slack: FakeSlack, runs: int, servers: int) -> None:
    built = history.build(runs, servers)
    with tempfile.TemporaryDirectory() as tmp:
        # A copy of the installation with an empty database beside it, sharing the live fleet.
        empty = Path(tmp) / "empty"
        empty.mkdir()
        shutil.copy(built / "byoi.yml", empty / "byoi.yml")
        shutil.copy(built / "m.yml", empty / "m.yml")
        (empty / "local").symlink_to(built / "local")
        env = slack_env(slack)
        timings: dict[str, list[tuple[float, float]]] = {"full": [], "empty": []}
        for _ in range(ROUNDS):
            for label, root in (("full", built), ("empty", empty)):
                timings[label].append(start_once(root / "byoi.yml", env))
    live = LocalProvider(built / "local").list_servers({})
    if len(live) != servers:
        raise SystemExit(f"the reconciler removed servers: {len(live)} of {servers} left")
    medians = {
        label: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
        for label, rs in timings.items()
    }
    print(f"\nbyoi serve start-up with history ({servers} live local servers), median of {ROUNDS}")
    print(f"{'database':<22} {'ready s':>8} {'RSS MB':>7}")
    for label, name in (("empty", "empty"), ("full", f"{runs} finished runs")):
        ready, rss = medians[label]
        print(f"{name:<22} {ready:8.3f} {rss:7.1f}")
    ready_ratio = medians["full"][0] / medians["empty"][0]
    rss_ratio = medians["full"][1] / medians["empty"][1]
    print(f"{'ratio (target <= 1.2)':<22} {ready_ratio:8.2f} {rss_ratio:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--runs", type=int, default=10_000, help="finished runs in the history")
    parser.add_argument("--servers", type=int, default=1_000, help="live servers")
    parser.add_argument("--no-sdk", action="store_true", help="skip the AWS/GCP table")
    args = parser.parse_args()
    slack = FakeSlack().start()
    try:
        if not args.no_sdk:
            sdk_table(slack)
        history_table(slack, args.runs, args.servers)
    finally:
        slack.stop()


if __name__ == "__main__":
    main()
