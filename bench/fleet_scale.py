"""How `scale`'s work after the ack grows with the fleet: an app with 1,000 servers against none.

One installation from bench/history.py (``--runs`` past runs, ``--servers`` live local-provider
servers in app0/production, none in app1). Each round times what a listener does after the ack
for `scale app0 +1` and for `scale app1 +1`, taking turns: the service call (plan and store the
run) and the Block Kit rendering of its reply. The run is then cancelled, outside the timing, so
the next round can do the same. Prints the medians and their ratio. Target: <= 1.2x.
Usage: .venv/bin/python -m bench.fleet_scale [--runs 200] [--servers 1000] [--rounds 41]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench import history
from bot.slack.blocks import messages
from pipeline.services.caller import Caller
from pipeline.services.replies import RunReply
from pipeline.services.service import Service

NOW = history.NOW


def post_ack_ms(service: Service, app: str) -> float:
    """The time of `scale <app> +1` after the ack; the run it stores is then cancelled."""
    started = time.perf_counter()
    reply = service.handle(f"scale {app} +1", Caller("UALICE"), NOW)
    messages.reply_blocks(reply, NOW)
    elapsed = (time.perf_counter() - started) * 1000
    assert isinstance(reply, RunReply) and reply.run is not None, reply
    service.handle(f"cancel {reply.run.id}", Caller("UALICE"), NOW)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_scale")
    parser.add_argument("--runs", type=int, default=200, help="past runs in the database")
    parser.add_argument("--servers", type=int, default=1_000, help="live servers in app0")
    parser.add_argument("--rounds", type=int, default=41, help="timed rounds per app")
    args = parser.parse_args()
    timings: dict[str, list[float]] = {"app1": [], "app0": []}
    with history.copied_service(args.runs, args.servers) as svc:
        for app in timings:
            post_ack_ms(svc, app)  # warm: caches, the first read of each page
        for _ in range(args.rounds):  # taking turns, so the machine's noise falls on both
            for app, times in timings.items():
                times.append(post_ack_ms(svc, app))
    none, fleet = (statistics.median(timings[app]) for app in ("app1", "app0"))
    print(f"`scale <app> +1` after the ack, median of {args.rounds} rounds ({args.runs} past runs)")
    print(f"{'no servers (app1)':<28} {none:8.2f} ms")
    print(f"{f'{args.servers} servers (app0)':<28} {fleet:8.2f} ms")
    print(f"{'ratio':<28} {fleet / none:8.2f}")


if __name__ == "__main__":
    main()
