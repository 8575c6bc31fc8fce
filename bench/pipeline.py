"""byoi's own cost over the cloud's: run time against the ideal, and Slack calls per run.

The provider only waits fixed latencies (launch, each script, register), so whatever a run takes
beyond the ideal is byoi's: the store's transactions, threads, notifications. The ideal is the
critical path of one server with max_parallel >= N, and the sum over servers with serial.
The runs are wired as `byoi serve` wires them: each server's steps timed by its Prometheus
meter, and shown in Slack through the real card notifier against the fake Slack Web API,
and its calls are counted against the budget: chat.postMessage <= 2 + phases + failed servers
(the card, a thread reply per step phase and per failed server, the summary); the bench exits 1
when a run goes over. The store's transactions and rows written per server are counted too.
Beside each run, the same sleeps on bare threads (no store, no notifier) show the floor that
threads alone reach on this machine, and the run's CPU time per server shows byoi's own work.
With ``--calls``, a parallel run goes to a provider that takes many servers per call (as every
adapter byoi ships does: local, AWS, GCP, DigitalOcean; the runner's cohorts of at most 200,
several at once, pipeline/execution/cohorts.py), one that takes one (a thread per server, as
for an adapter of one's own without ``providers.base.Batches``), or both in turn (the default).
Usage: .venv/bin/python -m bench.pipeline [N ...] [--strategy parallel|serial|both]
[--calls many|each|both] [--repeat R]
(the issue's large runs: ``--strategy parallel 300 1000``; ``--repeat 3`` for medians).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from bot.metrics import Metrics
from bot.slack.cards import Cards
from bot.slack.serve import NOTIFY_INTERVAL, settled, web_client
from pipeline.config.loader import load_config
from pipeline.domain.models import Run, RunState, ServerStatus
from pipeline.execution.fanout import fan_out
from pipeline.execution.runner import Runner
from pipeline.services.caller import Caller
from pipeline.services.display import Display
from pipeline.services.service import Service
from pipeline.state.store import Store
from providers.base import (
    TAG_KEY,
    Image,
    LaunchRequest,
    ProviderError,
    Script,
    ScriptResult,
    Server,
    ServerState,
    Target,
)
from tests.fakes.slack_api import FakeSlack

LATENCY = {"launch": 0.4, "script": 0.1, "register": 0.2}
SCRIPTS = 4  # scrub, deploy, probe, health
PATH = LATENCY["launch"] + SCRIPTS * LATENCY["script"] + LATENCY["register"]
NOW = datetime(2026, 11, 26, tzinfo=UTC)
T = TypeVar("T")


class LatencyProvider:
    """A provider that only takes time: fixed latencies, servers kept in memory."""

    name = "local"

    def __init__(self, latency: Mapping[str, float]) -> None:
        self.latency = latency
        self.servers: dict[str, Server] = {}
        self.members: set[str] = set()
        self.tags: dict[str, dict[str, str]] = {}
        """Tags added after launch, by server id (kept beside the servers, not by remaking one)."""
        self.image = Image(
            "img-1", "bench", NOW, family="bench", versions={"ruby_version": "3.2.2"}
        )

    def resolve_image(self, ref: str) -> Image:
        return self.image

    def list_images(self, family: str | None = None) -> list[Image]:
        return [self.image]

    def launch(self, request: LaunchRequest) -> Server:
        return _within(self.latency["launch"], lambda: self._made(request))

    def _made(self, request: LaunchRequest) -> Server:
        server = Server(
            request.key,
            request.name,
            self.image.id,
            ServerState.RUNNING,
            NOW,
            {**request.tags, TAG_KEY: request.key},
        )
        self.servers.setdefault(request.key, server)
        return self.servers[request.key]

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        return _within(self.latency["script"], lambda: _said(server, script))

    def register(self, server: Server, target: Target) -> None:
        time.sleep(self.latency["register"])
        self.members.add(server.id)

    def deregister(self, server: Server, target: Target) -> None:
        self.members.discard(server.id)

    def terminate(self, server: Server) -> None:
        self.servers.pop(server.id, None)

    def snapshot(
        self,
        server: Server,
        *,
        name: str,
        family: str | None,
        versions: Mapping[str, str],
        tags: Mapping[str, str] | None = None,
    ) -> Image:
        return self.image

    def delete_image(self, image: Image) -> None:
        pass

    def tag_server(self, server: Server, tags: Mapping[str, str]) -> None:
        self.tags.setdefault(server.id, {}).update(tags)

    def list_servers(self, tags: Mapping[str, str]) -> list[Server]:
        listed = [
            replace(s, tags={**s.tags, **self.tags[s.id]}) if s.id in self.tags else s
            for s in self.servers.values()
        ]
        return [s for s in listed if all(s.tags.get(k) == v for k, v in tags.items())]

    def target_members(self, target: Target) -> list[str]:
        return sorted(self.members)


class BatchLatencyProvider(LatencyProvider):
    """The same latencies for a call that takes many servers, as a cloud's batch APIs do: one
    RunInstances per server but one DescribeInstances waiting for all, one Run Command for many
    instances, one RegisterTargets. What the runner does around the calls is the same work.

    The cloud's own work for a call (making a thousand server records, their answers, their
    tags) is done within the call's latency, as a remote cloud does it: on this machine it
    would otherwise add a thousand records' CPU to a run's time as if it were byoi's."""

    def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
        return _within(self.latency["launch"], lambda: [self._made(r) for r in requests])

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        return _within(self.latency["script"], lambda: [_said(s, script) for s, script in jobs])

    def register_all(self, servers: Sequence[Server], target: Target) -> list[ProviderError | None]:
        def register() -> list[ProviderError | None]:
            self.members.update(server.id for server in servers)
            return [None for _ in servers]

        return _within(self.latency["register"], register)

    def tag_all(
        self, tagged: Sequence[tuple[Server, Mapping[str, str]]]
    ) -> list[ProviderError | None]:
        # No latency of its own in LATENCY (the ideal leaves tags out): kept as cheap as a
        # remote call's answer, the tags stored beside the servers, not by remaking each.
        for server, tags in tagged:
            self.tag_server(server, tags)
        return [None for _ in tagged]


def _within(seconds: float, work: Callable[[], T]) -> T:
    """``work``'s answer once ``seconds`` have passed since the call, as a remote cloud's."""
    started = time.perf_counter()
    answer = work()
    time.sleep(max(0.0, seconds - (time.perf_counter() - started)))
    return answer


def _said(server: Server, script: Script) -> ScriptResult:
    """A script's answer: a last line of its own on each server, as real output has (hosts,
    timings), so that nothing is shared between servers that would not be."""
    return ScriptResult(0, f"{script.name}: ok on {server.id}")


PROVIDERS = {"many": BatchLatencyProvider, "each": LatencyProvider}
"""Providers by how they take servers: many per call (``Batches``: every adapter byoi ships), or
one per call (an adapter of one's own without it)."""

CONFIG = """\
database: byoi.db
apps:
  web:
    manifest: m.yml
    provider: local
    image: family:bench
    approval_required: false
    max_servers: 1000
    max_parallel: {parallel}
    health_command: 'true'
    deploy_command: 'true'
    channel: C0BENCH
"""


@dataclass(frozen=True)
class Result:
    seconds: float
    cpu: float
    """CPU seconds of this process (every thread) while the run went."""
    calls: dict[str, int]
    budget: int
    """The run's post budget."""
    commits: int
    changes: int
    """Transactions committed and rows written."""


def bare_threads(n: int) -> float:
    """The floor for threads on this machine: N threads that only sleep one server's latencies,
    started the way the runner starts its own."""
    sleeps = [LATENCY["launch"], *[LATENCY["script"]] * SCRIPTS, LATENCY["register"]]

    def server(_: int) -> None:
        for seconds in sleeps:
            time.sleep(seconds)

    started = time.perf_counter()
    fan_out(server, range(n), n, "bare")
    return time.perf_counter() - started


@dataclass(frozen=True)
class Wired:
    """byoi's own parts for one run: the store, cards on the fake Slack, runner and service."""

    store: Store
    cards: Cards
    runner: Runner
    service: Service


def build(root: Path, fake: FakeSlack, n: int, calls: str = "many") -> Wired:
    """A configuration for ``n`` servers in parallel under ``root`` and byoi wired on it."""
    root.mkdir(parents=True)
    (root / "m.yml").write_text("rails:\n  configuration:\n    ruby_version: 3.2.2\n")
    (root / "byoi.yml").write_text(CONFIG.format(parallel=max(n, 1)))
    config = load_config(root / "byoi.yml")
    metrics = Metrics()  # as `byoi serve` wires it: each server's steps timed, calls counted
    provider = metrics.wrap_provider(PROVIDERS[calls](LATENCY))
    store = Store(config.database)
    cards = Cards(
        web_client("xoxb-bench", fake.api_url), Display(store), lambda: NOW, lambda run: "C0BENCH"
    )
    cards.start()
    runner = Runner(
        store=store,
        config=config,
        provider_for=lambda _: provider,
        notifier=cards,
        clock=lambda: NOW,
        notify_interval=NOTIFY_INTERVAL,
        meter=metrics,
    )
    service = Service(config=config, store=store, provider_for=lambda _: provider, runner=runner)
    return Wired(store, cards, runner, service)


def scale(wired: Wired, n: int, strategy: str) -> Run:
    """Scale up to ``n`` servers and wait for the run to end."""
    reply = wired.service.handle(
        f"scale web {n} --strategy {strategy}", Caller("UBENCH", channel="C0BENCH"), NOW
    )
    run = reply.run  # type: ignore[union-attr]
    assert run is not None, reply
    wired.cards.run_changed(run)
    wired.runner.wait()
    return run


def post_budget(store: Store, run_id: int) -> int:
    """The posts the finished run may make: the card, its phases, its failures, the summary."""
    final = store.run(run_id)
    assert final is not None and final.state == RunState.SUCCEEDED, final
    failed = sum(s.status == ServerStatus.FAILED for s in final.servers)
    return 2 + len(Display(store).phases(final)) + failed


def one_run(root: Path, fake: FakeSlack, n: int, strategy: str, calls: str) -> Result:
    wired = build(root, fake, n, calls)
    settled()  # as `byoi serve` once it has started
    database = wired.store.database
    before = len(fake.calls)
    commits, changes = database.commits, database.db.conn.total_changes
    started, cpu = time.perf_counter(), time.process_time()
    run = scale(wired, n, strategy)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    commits = database.commits - commits
    changes = database.db.conn.total_changes - changes
    wired.cards.stop()
    budget = post_budget(wired.store, run.id)
    wired.store.close()
    slack = Counter(call.method for call in fake.calls[before:])
    return Result(elapsed, cpu, dict(slack), budget, commits, changes)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    parser.add_argument("sizes", nargs="*", type=int, default=[1, 10, 50])
    parser.add_argument("--strategy", choices=("parallel", "serial", "both"), default="both")
    parser.add_argument(
        "--calls",
        choices=("many", "each", "both"),
        default="both",
        help="a provider that takes many servers per call, one per call, or both in turn",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; medians shown")
    args = parser.parse_args()
    strategies = ("parallel", "serial") if args.strategy == "both" else (args.strategy,)
    kinds = ("many", "each") if args.calls == "both" else (args.calls,)
    fake = FakeSlack().start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            for strategy in strategies:
                for calls in kinds if strategy == "parallel" else ("each",):
                    results, floors = [], []
                    for attempt in range(args.repeat):  # byoi and the floor in turns
                        run_root = Path(tmp) / f"{strategy}-{calls}-{n}-{attempt}"
                        results.append(one_run(run_root, fake, n, strategy, calls))
                        if strategy == "parallel":  # serial: one server at a time, nothing to add
                            floors.append(bare_threads(n))
                    ideal = PATH if strategy == "parallel" else PATH * n
                    rows.append((n, strategy, calls, ideal, results, floors))
    fake.stop()
    report(rows)


def report(rows: list[tuple[int, str, str, float, list[Result], list[float]]]) -> None:
    print(f"latencies: {LATENCY} (one server's critical path {PATH:.2f} s)")
    print(
        "ratio: run time / ideal (median of the runs); calls: the provider takes many servers "
        "per call or one; threads: the same sleeps on bare threads / ideal; CPU ms per server"
    )
    print(
        f"{'N':>4} {'strategy':<9} {'calls':<5} {'run s':>7} {'ideal s':>8} {'ratio':>6} "
        f"{'ratios':>18} {'threads':>7} {'cpu/srv':>7} {'tx/server':>9} {'rows/server':>11} "
        f"{'posts':>6} {'updates':>8} {'post budget':>11} {'update budget':>13}"
    )
    over = False
    for n, strategy, calls, ideal, results, floors in rows:
        r = sorted(results, key=lambda x: x.seconds)[len(results) // 2]
        posts = r.calls.get("chat.postMessage", 0)
        updates = r.calls.get("chat.update", 0)
        over = over or any(x.calls.get("chat.postMessage", 0) > x.budget for x in results)
        # Each message (the card, each phase reply) is edited at most once per ~2 s.
        edits = f"<= {(r.budget - 1) * int(r.seconds / 2 + 3)}"
        each = ",".join(f"{x.seconds / ideal:.2f}" for x in results)
        floor = f"{statistics.median(floors) / ideal:.3f}" if floors else "-"
        print(
            f"{n:>4} {strategy:<9} {calls:<5} {r.seconds:7.2f} {ideal:8.2f} "
            f"{r.seconds / ideal:6.3f} {each:>18} {floor:>7} {r.cpu / n * 1000:7.2f} "
            f"{r.commits / n:9.2f} {r.changes / n:11.1f} {posts:>6} {updates:>8} "
            f"{f'<= {r.budget}':>11} {edits:>13}"
        )
    if over:
        sys.exit("over the post budget")


if __name__ == "__main__":
    main()
