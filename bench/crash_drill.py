"""The crash drill as an operator would run it: kill `byoi serve` at every step boundary.

For each point, a 3-server scale-up on AWS (moto's server) is approved, byoi SIGKILLs itself at
the point (BYOI_DRILL_KILL_AT), and a fresh byoi is started. Prints, per point, how the run
ended, whether the live instances are exactly those the database accounts for, and the most
instances any one idempotency key made. Usage: .venv/bin/python -m bench.crash_drill [POINT ...]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from tests.e2e.slackbot import serving
from tests.e2e.test_crash_drill import all_instances, killed_at, run_row, wait_terminal
from tests.fakes.slack_api import FakeSlack
from tests.integration.test_aws_runs import aws_world

POINTS = [
    "clone_started:2",
    "launched:2",
    "scrub_started:2",
    "scrub_done:2",
    "deploy_started:2",
    "deploy_done:2",
    "register_started:2",
    "register_done:2",
]


def drill(root: Path, point: str, moto_url: str) -> tuple[str, bool, int, bool]:
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"))
    aws_world(root).store.close()
    fake = FakeSlack().start()
    try:
        killed = killed_at(root, fake, point)[0] == -9
        with serving(root, fake, log_name="restart.log"):
            state = wait_terminal(root)
            time.sleep(0.5)
    finally:
        fake.stop()
    _, servers = run_row(root)
    accounted = sorted(str(p) for status, p in servers if status == "done")
    instances = all_instances()
    live = sorted(i["InstanceId"] for i in instances if i["State"]["Name"] == "running")
    per_key = Counter({t["Key"]: t["Value"] for t in i["Tags"]}["byoi:key"] for i in instances)
    return state, live == accounted, max(per_key.values()), killed


def main() -> None:
    from moto.server import ThreadedMotoServer

    points = sys.argv[1:] or POINTS
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="drill",
        AWS_SECRET_ACCESS_KEY="drill",
        AWS_DEFAULT_REGION="us-east-1",
    )
    rows = []
    try:
        for point in points:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append((point, *drill(Path(tmp), point, url)))
    finally:
        moto.stop()
    print("crash drill: 3-server scale-up on AWS (moto), byoi killed at each point, restarted")
    print(
        f"{'point':<20} {'killed':>6} {'outcome':>10} {'live = accounted':>17} {'max per key':>11}"
    )
    for point, state, matches, per_key, killed in rows:
        print(
            f"{point:<20} {'yes' if killed else 'NO':>6} {state:>10} "
            f"{'yes' if matches else 'NO':>17} {per_key:>11}"
        )


if __name__ == "__main__":
    main()
