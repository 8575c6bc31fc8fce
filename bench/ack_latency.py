"""Slash-command and button ack latency of `byoi serve`, beside a bare Bolt app that only acks.

Both run as real processes on this machine, behind the same WSGI server, against the same fake
Slack Web API, and get the same signed requests, `CONCURRENCY` at a time. Prints median and p99
per kind and the ratio byoi / bare. Usage: .venv/bin/python -m bench.ack_latency [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from bot.shell import demo
from tests.e2e.slackbot import SECRET, TOKEN, Bot, click_body, free_port, slash_body
from tests.fakes.slack_api import FakeSlack

CONCURRENCY = 20
REPO = Path(__file__).resolve().parents[1]


def start(args: list[str], fake: FakeSlack, cwd: Path, config: Path) -> Bot:
    port = free_port()
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.api_url,
        "PORT": str(port),
        "BYOI_HOST": "127.0.0.1",
        "BYOI_CONFIG": str(config),
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
    while time.monotonic() < deadline:
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


def measure(send: Callable[[int], tuple[int, str, float]], n: int) -> list[float]:
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(send, range(n)))
    bad = [r for r in results if r[0] != 200]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed, e.g. {bad[0]}")
    return [r[2] * 1000 for r in results]


def send(bot: Bot, kind: str, i: int) -> tuple[int, str, float]:
    if kind == "slash command":
        body = slash_body("status demo", "UALICE", "C1", bot.fake.response_url)
    else:  # a click on a run that does not exist: acked, then answered with an error
        body = click_body("run_approve", 900000 + i, "UBOB", bot.fake.response_url)
    return bot.post(body, "application/x-www-form-urlencoded")


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    # The fake Slack answers byoi's replies; in its own process it takes no CPU from the client.
    fake_process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.slack_api"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert fake_process.stdout is not None
    fake = RemoteSlack(fake_process.stdout.readline().strip())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = demo.prepare(root / "demo", datetime.now(UTC))
        byoi = start(["-m", "bot", "serve"], fake, root, config)
        bare = start(["-m", "bench.bare_bolt"], fake, root, config)
        try:
            rows = []
            for kind in ("slash command", "button click"):
                for b in (byoi, bare):  # warm up
                    measure(partial(send, b, kind), CONCURRENCY)
                ours = measure(partial(send, byoi, kind), n)
                base = measure(partial(send, bare, kind), n)
                rows.append((kind, ours, base))
        finally:
            for b in (byoi, bare):
                b.process.terminate()
                b.process.wait(30)
            fake_process.terminate()
            fake_process.wait(10)
    print(f"ack latency, {n} signed requests per kind, {CONCURRENCY} at a time (ms)")
    print(
        f"{'kind':<14} {'byoi p50':>9} {'byoi p99':>9} {'bare p50':>9} {'bare p99':>9}"
        f" {'ratio p50':>9} {'ratio p99':>9}"
    )
    for kind, ours, base in rows:
        print(
            f"{kind:<14} {statistics.median(ours):9.1f} {p99(ours):9.1f} "
            f"{statistics.median(base):9.1f} {p99(base):9.1f} "
            f"{statistics.median(ours) / statistics.median(base):9.2f} "
            f"{p99(ours) / p99(base):9.2f}"
        )


if __name__ == "__main__":
    main()
