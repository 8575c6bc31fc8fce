"""Two byoi processes on one database: a run left in flight is resumed by one of them only.

The other process is real (a child Python holding the run's lock, as a running byoi does), and
it is killed with SIGKILL, as a crash would: its lock goes with it and the run is resumed."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from pipeline.domain.models import RunState
from pipeline.execution import recovery
from pipeline.state.runlocks import RunLocks
from tests.conftest import make_world, world_around

HOLDER = """
import sys, time
from pipeline.state.runlocks import RunLocks
locks = RunLocks(sys.argv[1])
assert locks.take(int(sys.argv[2]))
print("held", flush=True)
time.sleep(120)
"""


def test_a_run_another_process_carries_out_is_not_resumed_until_that_process_dies(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path / "w")
    world.runner.stop()  # approved, then byoi "crashed" before starting it
    run = world.request("scale web 2")
    world.say(f"approve {run.id}", "UBOB")
    assert world.stored(run.id).state == RunState.APPROVED
    database = world.store.database.path

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, database, str(run.id)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        second = world_around(world.root, world.provider, world.clock)
        assert recovery.resume(second.store, second.runner, world.clock()) == []
        assert second.runner.execute(run.id) is not None
        assert second.stored(run.id).state == RunState.APPROVED  # untouched: not ours
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)

    assert recovery.resume(second.store, second.runner, world.clock()) == [run.id]
    assert second.runner.wait(30)
    assert second.stored(run.id).state == RunState.SUCCEEDED
    assert len(world.provider.list_servers({})) == 2


def test_a_run_is_locked_for_one_process_and_free_again_once_given_back(tmp_path: Path) -> None:
    database = str(tmp_path / "byoi.db")
    locks = RunLocks(database)
    assert locks.take(7) and locks.take(7)  # a process may take its own run again
    probe = [sys.executable, "-c", "import sys; from pipeline.state.runlocks import RunLocks; "
             "sys.exit(0 if RunLocks(sys.argv[1]).take(int(sys.argv[2])) else 3)"]  # fmt: skip
    root = Path(__file__).parents[2]
    assert subprocess.run([*probe, database, "7"], cwd=root, check=False).returncode == 3
    assert subprocess.run([*probe, database, "8"], cwd=root, check=False).returncode == 0
    locks.give_back(7)
    assert subprocess.run([*probe, database, "7"], cwd=root, check=False).returncode == 0
    assert RunLocks(":memory:").take(7)
