"""Ack latency of `byoi serve` beside two bare Bolt apps that only ack: Bolt's default mode and
``process_before_response=True`` (byoi's mode), so each ratio compares like with like.

All three run as real processes on this machine, behind the same WSGI server with the same
thread count, against the same fake Slack Web API (in its own process), and get the same signed
requests, CONCURRENCY at a time: `help`, `status web` and `scale web +1` (no approval needed, so
runs really execute on the local provider while acks are measured, and servers accumulate).
Prints p50/p99 per kind and concurrency, and byoi's ratio to each bare app. Target: p99 within
1.5x of the same-mode bare app. The machine is shared, so the apps take turns in rounds of
--round requests and the ratio judged is the median over rounds of each round's p99 ratio: a
burst of load from elsewhere lands in one round, not on one app.
Usage: .venv/bin/python -m bench.ack_latency [--requests 600] [--round 100] [--concurrency 20 50]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
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


Rounds = list[dict[str, list[float]]]
"""Per round, each app's latencies (ms)."""


def run_all(
    bots: dict[str, Bot], n: int, size: int, levels: list[int]
) -> list[tuple[str, int, Rounds]]:
    """For each concurrency and kind: ``n`` requests per app in rounds of ``size``, the apps in
    turns within a round (who goes first rotates), so a burst of noise on this shared machine
    falls on all of them alike and each round's ratio compares like with like."""
    rows = []
    for concurrency in levels:
        for kind, text in KINDS.items():
            for bot in bots.values():  # warm up
                measure(partial(send, bot, text), concurrency, concurrency)
            rounds: Rounds = []
            names = list(bots)
            for index in range(max(1, n // size)):
                order = names[index % len(names) :] + names[: index % len(names)]
                rounds.append(
                    {
                        name: measure(partial(send, bots[name], text), size, concurrency)
                        for name in order
                    }
                )
            rows.append((kind, concurrency, rounds))
    return rows


def ratio(rounds: Rounds, name: str, of: Callable[[list[float]], float]) -> float:
    """The median over rounds of byoi's figure over ``name``'s in the same round."""
    return statistics.median(of(r["byoi"]) / of(r[name]) for r in rounds)


def report(rows: list[tuple[str, int, Rounds]], n: int, size: int) -> None:
    print(f"ack latency (ms), {n} signed requests per app, kind and concurrency, rounds of {size}")
    print("bare pbr = bare Bolt app with process_before_response=True, byoi's own mode")
    print(
        "p50/p99 over all requests; ratios: median over rounds of the round's byoi / bare "
        "(the figure the target is judged on), and their range"
    )
    print(
        f"{'kind':<7} {'conc':>4} {'byoi p50':>8} {'p99':>6} {'pbr p50':>7} {'p99':>6} "
        f"{'dflt p50':>8} {'p99':>6}  {'p99/pbr':>7} {'range':>11} {'p99/dflt':>8} {'p50/pbr':>7}"
    )
    for kind, concurrency, rounds in rows:
        every = {name: [v for r in rounds for v in r[name]] for name in rounds[0]}
        ours, pbr, default = every["byoi"], every["bare pbr"], every["bare default"]
        spread = sorted(p99(r["byoi"]) / p99(r["bare pbr"]) for r in rounds)
        print(
            f"{kind:<7} {concurrency:>4} {statistics.median(ours):8.1f} {p99(ours):6.1f} "
            f"{statistics.median(pbr):7.1f} {p99(pbr):6.1f} {statistics.median(default):8.1f} "
            f"{p99(default):6.1f}  {ratio(rounds, 'bare pbr', p99):7.2f} "
            f"{f'{spread[0]:.2f}-{spread[-1]:.2f}':>11} {ratio(rounds, 'bare default', p99):8.2f} "
            f"{ratio(rounds, 'bare pbr', statistics.median):7.2f}"
        )


@contextlib.contextmanager
def remote_slack() -> Iterator[RemoteSlack]:
    """The fake Slack in its own process, so it takes no CPU from the measuring one."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.slack_api"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        yield RemoteSlack(process.stdout.readline().strip())
    finally:
        process.terminate()
        process.wait(10)


def start_apps(fake: FakeSlack, root: Path, config: Path) -> dict[str, Bot]:
    """byoi and the two bare Bolt apps, each its own process."""
    bare = ["-m", "bench.bare_bolt"]
    return {
        "byoi": start(["-m", "bot", "serve"], fake, root, config),
        "bare default": start(bare, fake, root, config),
        "bare pbr": start(bare, fake, root, config, {"BARE_PROCESS_BEFORE_RESPONSE": "1"}),
    }


def stop_apps(bots: dict[str, Bot]) -> None:
    for bot in bots.values():
        bot.process.terminate()
        try:
            bot.process.wait(30)
        except subprocess.TimeoutExpired:  # still posting a backlog of cards, paced
            bot.process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ack_latency")
    parser.add_argument("--requests", type=int, default=600, help="per kind and concurrency")
    parser.add_argument("--round", type=int, default=100, help="requests per app in a round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[20, 50])
    args = parser.parse_args()
    # The fake Slack answers byoi's replies; in its own process it takes no CPU from the client.
    with remote_slack() as fake, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = prepare(root / "byoi")
        bots = start_apps(fake, root, config)
        try:
            rows = run_all(bots, args.requests, args.round, args.concurrency)
            servers = len(LocalProvider(root / "byoi" / "local").list_servers({}))
        finally:
            stop_apps(bots)
    report(rows, args.requests, args.round)
    print(f"live servers at the end (scale runs executed meanwhile): {servers}")


if __name__ == "__main__":
    main()
