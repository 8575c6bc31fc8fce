"""How the read commands and `scale` scale with history: 1,000 against 100,000 past runs.

Two installations from bench/history.py, the same but for the number of finished runs (each
has 1,000 live local-provider servers in app0/production). Each command is timed the way a
listener runs it after the ack (the service call, and the Block Kit rendering where Slack shows
it); App Home is `status` and `images` of every app plus the home view. `scale app1 +1` plans
and stores a run (then cancelled, so the next round can do the same); `scale app0 +1` does it
for the app with the 1,000 servers. Prints medians and the ratio. Target: each <= 1.2x.
Usage: .venv/bin/python -m bench.store_scale [--small 1000] [--large 100000] [--servers 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bench import history
from bot.slack.blocks import messages
from pipeline.services.caller import Caller
from pipeline.services.replies import ImagesReply, RunReply, StatusReply
from pipeline.services.service import Service

ROUNDS = 41
NOW = history.NOW


def _home(service: Service) -> None:
    status = service.views.status(None, NOW)
    images = service.views.images(None, NOW)
    assert isinstance(status, StatusReply) and isinstance(images, ImagesReply)
    messages.home_view(status, images)


def _scale(service: Service, app: str) -> None:
    reply = service.handle(f"scale {app} +1", Caller("UALICE"), NOW)
    assert isinstance(reply, RunReply) and reply.run is not None, reply
    messages.reply_blocks(reply, NOW)
    service.handle(f"cancel {reply.run.id}", Caller("UALICE"), NOW)


def _command(service: Service, text: str) -> Callable[[], None]:
    def run() -> None:
        messages.reply_blocks(service.handle(text, Caller("UALICE"), NOW), NOW)

    return run


@contextmanager
def installation(runs: int, servers: int) -> Iterator[dict[str, Callable[[], None]]]:
    """The commands, ready to time, on a copy of the installation with ``runs`` past runs."""
    with history.copied_service(runs, servers) as service:
        yield {
            "history": _command(service, "history"),
            "history app3": _command(service, "history app3"),
            "status app0 (1,000 servers)": _command(service, "status app0"),
            "status app5 (none)": _command(service, "status app5"),
            "App Home (10 apps)": lambda: _home(service),
            "scale app1 +1": lambda: _scale(service, "app1"),
            "scale app0 +1": lambda: _scale(service, "app0"),
        }


def _time(command: Callable[[], None]) -> float:
    started = time.perf_counter()
    command()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store_scale")
    parser.add_argument("--small", type=int, default=1_000, help="past runs, the baseline")
    parser.add_argument("--large", type=int, default=100_000, help="past runs, compared")
    parser.add_argument("--servers", type=int, default=1_000, help="live servers in app0")
    args = parser.parse_args()
    rows = []
    with (
        installation(args.small, args.servers) as small,
        installation(args.large, args.servers) as large,
    ):
        for name in small:
            timings: dict[int, list[float]] = {0: [], 1: []}
            small[name](), large[name]()  # warm: caches, the first read of each page
            for _ in range(ROUNDS):  # alternating, so the machine's noise falls on both
                timings[0].append(_time(small[name]))
                timings[1].append(_time(large[name]))
            rows.append((name, statistics.median(timings[0]), statistics.median(timings[1])))
    print(f"{args.servers} live servers; median of {ROUNDS}, alternating rounds (ms)")
    print(f"{'command':<28} {f'{args.small} runs':>11} {f'{args.large} runs':>12} {'ratio':>6}")
    for name, a, b in rows:
        print(f"{name:<28} {a:11.2f} {b:12.2f} {b / a:6.2f}")


if __name__ == "__main__":
    main()
