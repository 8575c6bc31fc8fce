"""A day of use compressed: thousands of runs through one `byoi serve` process, watching its RSS
and thread count.

`byoi serve` runs as a real process over HTTP, its provider swapped for the fixed-latency one of
bench/pipeline.py (everything else is byoi's own wiring), against the fake Slack Web API in its
own process. APPS apps, each with its own channel, scale up to 1 and back to 0 in turn through
signed `/byoi scale` requests, no closer than PACE seconds apart per app: Slack takes a post a
second per channel, and a run's card and thread take five posts on average (a scale-up six: the
card, four phase replies, the summary; a scale-down four), so a closer pace would pile up cards
no Slack could show. RSS and threads are read when byoi is idle (no run active, every card
shown): after the first runs (once its caches and pools exist) and at the end. Target: no
growth beyond 10 %.
Usage: .venv/bin/python -m bench.soak [--runs 2000] (the issue's size: --runs 10000)
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.ack_latency import remote_slack
from bench.pipeline import LatencyProvider
from tests.e2e.slackbot import Bot, serving

REPO = Path(__file__).resolve().parents[1]
APPS = 120
PACE = 6.0
LATENCY = {"launch": 0.02, "script": 0.005, "register": 0.01}
APP = """\
  app{n}:
    manifest: m.yml
    provider: local
    image: family:bench
    operators: [UALICE]
    approval_required: false
    max_servers: 10
    drain_seconds: 0
    deploy_command: 'true'
    health_command: 'true'
    channel: C0SOAK{n:03d}
"""
ACTIVE = "('planned', 'awaiting_approval', 'approved', 'running')"
UNSHOWN = """SELECT count(*) FROM runs LEFT JOIN cards ON cards.run_id = runs.id
WHERE runs.channel IS NOT NULL AND coalesce(cards.settled, 0) = 0"""


def serve_child() -> int:
    """`byoi serve` with the fixed-latency provider in place of the local one."""
    from bot import cli, wiring

    if os.environ.get("SOAK_TRACEMALLOC"):  # --trace: snapshots on SIGUSR1, for a leak hunt
        import signal
        import tracemalloc

        tracemalloc.start(10)
        shots = iter(range(1000))
        signal.signal(
            signal.SIGUSR1,
            lambda *_: tracemalloc.take_snapshot().dump(
                f"{os.environ['SOAK_TRACEMALLOC']}.{next(shots)}"
            ),
        )
    provider = LatencyProvider(LATENCY)
    wiring.Providers._build = lambda self, name: provider  # type: ignore[method-assign]
    return cli.main(["serve"])


def sample(pid: int) -> tuple[float, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


class Driver:
    def __init__(self, bot: Bot, database: Path, target: int) -> None:
        self.bot = bot
        self.database = database
        self.target = target
        self.started = 0
        self.lock = threading.Lock()
        self.go = threading.Event()
        self.go.set()
        self.failures: list[str] = []

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30)

    def active(self, db: sqlite3.Connection, app: str | None = None) -> int:
        where = "AND app = ?" if app else ""
        sql = f"SELECT count(*) FROM runs WHERE state IN {ACTIVE} {where}"
        return int(db.execute(sql, [app] if app else []).fetchone()[0])

    def app_loop(self, n: int) -> None:
        db = self._db()
        app, up = f"app{n}", True
        while True:
            self.go.wait()
            with self.lock:
                if self.started >= self.target:
                    return
                self.started += 1
            began = time.monotonic()
            before = db.execute("SELECT count(*) FROM runs WHERE app = ?", [app]).fetchone()[0]
            status, _, _ = self.bot.command(f"scale {app} {int(up)}", "UALICE", f"C0SOAK{n:03d}")
            if status != 200:
                self.failures.append(f"{app}: HTTP {status}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.2)
                count = db.execute("SELECT count(*) FROM runs WHERE app = ?", [app]).fetchone()
                if count[0] > before and not self.active(db, app):
                    break
            else:
                self.failures.append(f"{app}: run not finished in 60 s")
            up = not up
            time.sleep(max(0.0, PACE - (time.monotonic() - began)))

    def quiesce(self) -> int:
        """Wait until no run is active and every card is shown, then a little longer for the
        flusher to idle; returns how many cards were still not shown (given up after 2 min)."""
        db = self._db()
        deadline = time.monotonic() + 120
        while self.active(db) and time.monotonic() < deadline:
            time.sleep(0.2)
        while (unshown := int(db.execute(UNSHOWN).fetchone()[0])) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)
        db.close()
        return unshown


@dataclass(frozen=True)
class Reading:
    """byoi idle (no run active, every card shown, or given up on): its RSS and threads."""

    at: int
    """Runs started by then."""
    rss: float
    threads: int
    behind: int
    """Cards still not shown when it was read."""


@dataclass(frozen=True)
class Figures:
    ready: tuple[float, int]
    warm: Reading
    end: Reading
    trend: list[tuple[int, float]]
    ran: float
    """Seconds until the last run was driven."""
    elapsed: float
    states: dict[str, int]
    failures: list[str]


def read_idle(driver: Driver, pid: int, trace: bool) -> Reading:
    behind = driver.quiesce()
    rss, threads = sample(pid)
    if trace:
        os.kill(pid, signal.SIGUSR1)
    return Reading(driver.started, rss, threads, behind)


def warm_reading(driver: Driver, pid: int, warmup: int, trace: bool) -> Reading:
    """The first reading: after ``warmup`` runs, the driver held until it is taken."""
    while driver.started < warmup:
        time.sleep(0.1)
    driver.go.clear()
    reading = read_idle(driver, pid, trace)
    driver.go.set()
    return reading


def follow(
    driver: Driver, threads: list[threading.Thread], pid: int, runs: int
) -> list[tuple[int, float]]:
    """RSS every tenth of the runs until the apps are done: runs are in flight meanwhile, so
    only a rough line between the readings."""
    trend: list[tuple[int, float]] = []
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        if driver.started >= (len(trend) + 1) * runs // 10:
            trend.append((driver.started, sample(pid)[0]))
    for thread in threads:
        thread.join()
    return trend


def outcomes(database: Path) -> dict[str, int]:
    db = sqlite3.connect(database)
    states = dict(db.execute("SELECT state, count(*) FROM runs GROUP BY state").fetchall())
    db.close()
    return states


def soak(bot: Bot, database: Path, runs: int, warmup: int, trace: bool) -> Figures:
    """Drive ``runs`` runs through ``bot`` from every app at once, reading it idle twice."""
    pid = bot.process.pid
    ready = sample(pid)
    driver = Driver(bot, database, runs)
    threads = [
        threading.Thread(target=driver.app_loop, args=(n,), daemon=True) for n in range(APPS)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    warm = warm_reading(driver, pid, warmup, trace)
    trend = follow(driver, threads, pid, runs)
    ran = time.monotonic() - began
    end = read_idle(driver, pid, trace)
    if trace:
        time.sleep(5)
    elapsed = time.monotonic() - began
    return Figures(ready, warm, end, trend, ran, elapsed, outcomes(database), driver.failures)


def write_config(root: Path) -> None:
    (root / "m.yml").write_text("rails:\n  configuration:\n    ruby_version: 3.2.2\n")
    apps = "".join(APP.format(n=n) for n in range(APPS))
    (root / "byoi.yml").write_text(
        f"database: byoi.db\nproviders:\n  local:\n    root: local\napps:\n{apps}"
    )


def report(figures: Figures, runs: int) -> None:
    f, warm, end = figures, figures.warm, figures.end
    print(
        f"soak: {runs} runs through one byoi serve, {APPS} apps, {f.elapsed:.0f} s "
        f"({runs / f.ran:.1f} runs/s until the last was driven)"
    )
    print(f"cards not shown at the readings: {warm.behind}, {end.behind} (each waited for)")
    print(f"run outcomes: {f.states}; driver problems: {len(f.failures)} {f.failures[:3]}")
    print(f"{'when':<28} {'RSS MB':>8} {'threads':>8}")
    print(f"{'ready':<28} {f.ready[0]:8.1f} {f.ready[1]:>8}")
    print(f"{f'after {warm.at} runs (idle)':<28} {warm.rss:8.1f} {warm.threads:>8}")
    print(f"{f'after {runs} runs (idle)':<28} {end.rss:8.1f} {end.threads:>8}")
    print("RSS MB on the way: " + ", ".join(f"{n}: {rss:.0f}" for n, rss in f.trend))
    print(
        f"growth from the first reading: RSS {end.rss / warm.rss - 1:+.1%}, "
        f"threads {end.threads - warm.threads:+d} (target: within 10 %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--warmup", type=int, default=0, help="runs before the first reading")
    parser.add_argument("--trace", help="tracemalloc snapshots at both readings to TRACE.0/.1")
    args = parser.parse_args()
    warmup = args.warmup or max(APPS, args.runs // 20)
    command = [sys.executable, "-m", "bench.soak", "--serve"]
    env = {"BYOI_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    if args.trace:
        env["SOAK_TRACEMALLOC"] = args.trace
    with remote_slack() as fake, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_config(root)
        with serving(root, fake, env, command=command) as bot:
            figures = soak(bot, root / "byoi.db", args.runs, warmup, bool(args.trace))
    report(figures, args.runs)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        sys.exit(serve_child())
    main()
