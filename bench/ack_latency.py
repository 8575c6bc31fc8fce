"""Ack latency of `byoi serve` beside two bare Bolt apps that only ack: Bolt's default mode and
``process_before_response=True`` (byoi's mode), so each ratio compares like with like.

All three run as real processes on this machine, behind the same WSGI server with the same
thread count, against the same fake Slack Web API (in its own process), and get the same signed
requests, CONCURRENCY at a time: `help`, `status web` and `scale web +1` (no approval needed, so
runs really execute on the local provider while acks are measured, and servers accumulate).
Prints p50/p99 per kind and concurrency, and byoi's ratio to each bare app. Target: p99 within
1.5x of the same-mode bare app. The machine is shared: compare ratios, rerun before trusting one.
Usage: .venv/bin/python -m bench.ack_latency [--requests 400] [--concurrency 20 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from providers.local import LocalProvider
from tests.e2e.slackbot import SECRET, TOKEN, Bot, free_port, slash_body
from tests.fakes.slack_api import FakeSlack

REPO = Path(__file__).resolve().parents[1]
KINDS = {"help": "help", "status": "status web", "scale": "scale web +1"}
CONFIG = """\
database: byoi.db
providers:
  local:
    root: local
apps:
  web:
    manifest: manifest.yml
    provider: local
    image: family:web
    target: web-lb
    operators: [UALICE]
    approval_required: false
    max_servers: 100000
    drain_seconds: 0
    deploy_command: 'mkdir -p current && echo "$BYOI_RELEASE" > current/VERSION'
    health_command: test -s current/VERSION
    channel: C0BENCH1
"""
MANIFEST = "rails:\n  configuration:\n    ruby_version: 3.2.2\n"


def prepare(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "manifest.yml").write_text(MANIFEST)
    provider = LocalProvider(root / "local")
    files = {"/etc/machine-id": "abc\n", "/srv/app/current/VERSION": "v1\n"}
    provider.create_image("web-base", files, family="web", versions={"ruby_version": "3.2.2"})
    provider.close()
    (root / "byoi.yml").write_text(CONFIG)
    return root / "byoi.yml"


def start(
    args: list[str], fake: FakeSlack, cwd: Path, config: Path, extra: dict[str, str] | None = None
) -> Bot:
    port = free_port()
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.api_url,
        "PORT": str(port),
        "BYOI_HOST": "127.0.0.1",
        "BYOI_CONFIG": str(config),
        **(extra or {}),
    }
    env.pop("SLACK_APP_TOKEN", None)
    log = cwd / f"{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    bot = Bot(f"http://127.0.0.1:{port}", process, fake, cwd, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"{bot.url}/slack/events", timeout=1)
        except urllib.error.HTTPError:
            return bot  # answering (405/404 for a GET): up
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{args} did not start:\n{log.read_text()}")


class RemoteSlack(FakeSlack):
    """The fake Slack running in another process, known by its URL."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url

    @property
    def url(self) -> str:
        return self._url


def measure(send: Callable[[int], tuple[int, str, float]], n: int, concurrency: int) -> list[float]:
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(send, range(n)))
    bad = [r for r in results if r[0] != 200]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed, e.g. {bad[0]}")
    return [r[2] * 1000 for r in results]


def send(bot: Bot, text: str, i: int) -> tuple[int, str, float]:
    body = slash_body(text, "UALICE", "C0BENCH1", bot.fake.response_url)
    return bot.post(body, "application/x-www-form-urlencoded")


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def run_all(
    bots: dict[str, Bot], n: int, levels: list[int]
) -> list[tuple[str, int, dict[str, list[float]]]]:
    rows = []
    for concurrency in levels:
        for kind, text in KINDS.items():
            for bot in bots.values():  # warm up
                measure(partial(send, bot, text), concurrency, concurrency)
            timings: dict[str, list[float]] = {name: [] for name in bots}
            for _ in range(4):  # in turns, so a burst of noise falls on all three
                for name, bot in bots.items():
                    timings[name] += measure(partial(send, bot, text), n // 4, concurrency)
            rows.append((kind, concurrency, timings))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ack_latency")
    parser.add_argument("--requests", type=int, default=400, help="per kind and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[20, 50])
    args = parser.parse_args()
    # The fake Slack answers byoi's replies; in its own process it takes no CPU from the client.
    fake_process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.slack_api"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert fake_process.stdout is not None
    fake = RemoteSlack(fake_process.stdout.readline().strip())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = prepare(root / "byoi")
        bots = {
            "byoi": start(["-m", "bot", "serve"], fake, root, config),
            "bare default": start(["-m", "bench.bare_bolt"], fake, root, config),
            "bare pbr": start(
                ["-m", "bench.bare_bolt"],
                fake,
                root,
                config,
                {"BARE_PROCESS_BEFORE_RESPONSE": "1"},
            ),
        }
        try:
            rows = run_all(bots, args.requests, args.concurrency)
            servers = len(LocalProvider(root / "byoi" / "local").list_servers({}))
        finally:
            for bot in bots.values():
                bot.process.terminate()
                try:
                    bot.process.wait(30)
                except subprocess.TimeoutExpired:  # still posting a backlog of cards, paced
                    bot.process.kill()
            fake_process.terminate()
            fake_process.wait(10)
    print(f"ack latency (ms), {args.requests} signed requests per kind and concurrency")
    print("bare pbr = bare Bolt app with process_before_response=True, byoi's own mode")
    print(
        f"{'kind':<7} {'conc':>4} {'byoi p50':>8} {'p99':>6} {'pbr p50':>7} {'p99':>6} "
        f"{'dflt p50':>8} {'p99':>6}  {'p99/pbr':>7} {'p99/dflt':>8} {'p50/pbr':>7}"
    )
    for kind, concurrency, t in rows:
        ours, pbr, default = t["byoi"], t["bare pbr"], t["bare default"]
        print(
            f"{kind:<7} {concurrency:>4} {statistics.median(ours):8.1f} {p99(ours):6.1f} "
            f"{statistics.median(pbr):7.1f} {p99(pbr):6.1f} {statistics.median(default):8.1f} "
            f"{p99(default):6.1f}  {p99(ours) / p99(pbr):7.2f} {p99(ours) / p99(default):8.2f} "
            f"{statistics.median(ours) / statistics.median(pbr):7.2f}"
        )
    print(f"live servers at the end (scale runs executed meanwhile): {servers}")


if __name__ == "__main__":
    main()
