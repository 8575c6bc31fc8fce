"""byoi's own cost over the cloud's: run time against the ideal, and Slack calls per run.

The provider only waits fixed latencies (launch, each script, register), so whatever a run takes
beyond the ideal is byoi's: the store's transactions, threads, notifications. The ideal is the
critical path of one server with max_parallel >= N, and the sum over servers with serial.
The same runs are shown in Slack through the real card notifier against the fake Slack Web API,
and its calls are counted. Usage: .venv/bin/python -m bench.pipeline [N ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bot.slack.cards import Cards
from bot.slack.serve import web_client
from pipeline.config.loader import load_config
from pipeline.domain.models import RunState
from pipeline.execution.runner import Runner
from pipeline.services.caller import Caller
from pipeline.services.display import Display
from pipeline.services.service import Service
from pipeline.state.store import Store
from providers.base import (
    TAG_KEY,
    Image,
    LaunchRequest,
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


class LatencyProvider:
    """A provider that only takes time: fixed latencies, servers kept in memory."""

    name = "local"

    def __init__(self, latency: Mapping[str, float]) -> None:
        self.latency = latency
        self.servers: dict[str, Server] = {}
        self.members: set[str] = set()
        self.image = Image(
            "img-1", "bench", NOW, family="bench", versions={"ruby_version": "3.2.2"}
        )

    def resolve_image(self, ref: str) -> Image:
        return self.image

    def list_images(self, family: str | None = None) -> list[Image]:
        return [self.image]

    def launch(self, request: LaunchRequest) -> Server:
        time.sleep(self.latency["launch"])
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
        time.sleep(self.latency["script"])
        return ScriptResult(0, f"{script.name}: ok")

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
        self.servers[server.id] = replace(server, tags={**server.tags, **tags})

    def list_servers(self, tags: Mapping[str, str]) -> list[Server]:
        return [
            s for s in self.servers.values() if all(s.tags.get(k) == v for k, v in tags.items())
        ]

    def target_members(self, target: Target) -> list[str]:
        return sorted(self.members)


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


def one_run(root: Path, fake: FakeSlack, n: int, strategy: str) -> tuple[float, dict[str, int]]:
    root.mkdir(parents=True)
    (root / "m.yml").write_text("rails:\n  configuration:\n    ruby_version: 3.2.2\n")
    (root / "byoi.yml").write_text(CONFIG.format(parallel=max(n, 1)))
    config = load_config(root / "byoi.yml")
    provider = LatencyProvider(LATENCY)
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
        notify_interval=0.1,
    )
    service = Service(config=config, store=store, provider_for=lambda _: provider, runner=runner)
    before = len(fake.calls)
    started = time.perf_counter()
    reply = service.handle(
        f"scale web {n} --strategy {strategy}", Caller("UBENCH", channel="C0BENCH"), NOW
    )
    run = reply.run  # type: ignore[union-attr]
    assert run is not None, reply
    cards.run_changed(run)
    runner.wait()
    elapsed = time.perf_counter() - started
    cards.stop()
    final = store.run(run.id)
    assert final is not None and final.state == RunState.SUCCEEDED, final
    store.close()
    calls: dict[str, int] = {}
    for call in fake.calls[before:]:
        calls[call.method] = calls.get(call.method, 0) + 1
    return elapsed, calls


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1, 10, 50]
    fake = FakeSlack().start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for strategy in ("parallel", "serial"):
                elapsed, calls = one_run(Path(tmp) / f"{strategy}-{n}", fake, n, strategy)

                ideal = PATH if strategy == "parallel" else PATH * n
                rows.append((n, strategy, elapsed, ideal, calls))
    fake.stop()
    print(f"latencies: {LATENCY} (one server's critical path {PATH:.2f} s)")
    print(
        f"{'N':>3} {'strategy':<9} {'run s':>7} {'ideal s':>8} {'ratio':>6} "
        f"{'posts':>6} {'updates':>8} {'post budget':>11} {'update budget':>13}"
    )
    for n, strategy, elapsed, ideal, calls in rows:
        posts = calls.get("chat.postMessage", 0)
        updates = calls.get("chat.update", 0)
        print(
            f"{n:>3} {strategy:<9} {elapsed:7.2f} {ideal:8.2f} {elapsed / ideal:6.3f} "
            f"{posts:>6} {updates:>8} {'<= 2':>11} {f'<= {int(elapsed / 2 + 3)}':>13}"
        )


if __name__ == "__main__":
    main()
