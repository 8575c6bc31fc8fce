"""`byoi shell` as a new user meets it: the demo, scripted through stdin, and a crash restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import config_text, make_world, today

DEMO_SCRIPT = """\
scale demo 3
approve 1
as UBOB
approve 1
status
history
as UALICE
scale demo 1
as UBOB
approve 2
status
history
"""


def shell(
    cwd: Path, stdin: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "BYOI_DEMO_DIR": str(cwd / "demo"), **(env or {})},
    )


def test_the_demo_scales_up_with_approval_then_down(tmp_path: Path) -> None:
    done = shell(tmp_path, DEMO_SCRIPT)

    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "run 1 · scale up demo/staging: 0 → 3 server(s)" in out
    assert "45 days old (limit 30); ruby_version 3.1.2 → 3.2.2" in out
    assert "✗ You requested this run; someone else has to approve it." in out
    assert "Approved by UBOB; starting." in out
    assert out.count("scrubbed 7: /etc/machine-id, /etc/ssh/ssh_host_ed25519_key") == 3
    phases = [line for line in out.splitlines() if " done · " in line]
    assert [line.split(" · ")[0] for line in phases] == [
        "[run 1] ✓ clone",
        "[run 1] ✓ scrub",
        "[run 1] ✓ deploy",
        "[run 1] ✓ probe",
        "[run 1] ✓ register",
        "[run 2] ✓ drain",
        "[run 2] ✓ terminate",
    ]
    assert " 3/3 done · " in phases[1] and phases[1].endswith(" · removed 7 paths on each")
    assert out.count("✓") >= 3
    assert "demo/staging: 1 server(s)" in out
    assert (
        "run 2    " in out and "scale down 3 → 1  succeeded  (by UALICE, approved by UBOB)" in out
    )
    servers = sorted(p.parent for p in (tmp_path / "demo/local/servers").glob("*/server.json"))
    live = [s for s in servers if (s / "rootfs").exists()]
    assert len(servers) == 3 and len(live) == 1
    root = live[0] / "rootfs"
    assert (root / "etc/machine-id").read_text() == ""
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert not (root / "srv/app/shared").exists()
    assert not (root / "srv/app/.env").exists()
    assert (root / "srv/app/current/VERSION").read_text() == "v2.0.0\n"


def test_the_demo_lifecycle_bakes_measured_versions_and_rolls_the_fleet(tmp_path: Path) -> None:
    first = shell(tmp_path, "scale demo 3\nas UBOB\napprove 1\nscan\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("measured operating_system ubuntu2204, ruby_version 3.1.2") == 3
    server = sorted(p.parent.name for p in (tmp_path / "demo/local/servers").glob("*/server.json"))[
        0
    ]

    # A snapshot of a server cloned from the old image measures the old Ruby: drift stays.
    second = shell(tmp_path, f"refresh demo --from {server}\nas UBOB\napprove 2\nscan\n")
    out = second.stdout
    assert "kept unpublished: measured ≠ declared: ruby_version 3.1.2 ≠ 3.2.2" in out
    assert "ruby_version 3.1.2 → 3.2.2" in out.split("as UBOB")[-1].split("UBOB> scan")[-1]

    # A bake upgrades Ruby on a builder and publishes; the scan then asks for a roll.
    third = shell(tmp_path, "refresh demo\nas UBOB\napprove 3\nscan\n")
    out = third.stdout
    assert "published into family demo; measured versions match" in out
    assert "measured operating_system ubuntu2204, ruby_version 3.2.2" in out
    assert "3 of 3 server(s) differ from the image: 3 run ruby_version 3.1.2" in out
    assert len(list((tmp_path / "demo/local/servers").glob("*/server.json"))) == 4  # + builder
    assert len(list((tmp_path / "demo/local/servers").glob("*/rootfs"))) == 3

    fourth = shell(tmp_path, "roll demo --batch 2\nas UBOB\napprove 4\nstatus\nscan\n")
    out = fourth.stdout
    assert fourth.returncode == 0, fourth.stderr
    assert "replaces  3 server(s) in batches of 2, surge first" in out
    batches = [line for line in out.splitlines() if line.startswith("[run 4] ✓ batch")]
    assert [line.split(" · ")[:3] for line in batches] == [  # the thread's batch lines
        ["[run 4] ✓ batch 1/2", "2/2 new up", "2/2 old removed"],
        ["[run 4] ✓ batch 2/2", "1/1 new up", "1/1 old removed"],
    ]
    status = out.split("UBOB> status")[-1].split("UBOB> scan")[0]
    assert status.count("ruby_version 3.2.2") == 3 and "3.1.2" not in status
    assert "demo/staging: 3 server(s)" in status
    scan = out.split("UBOB> scan")[-1]
    staging = next(line for line in scan.splitlines() if line.startswith("demo/staging"))
    assert staging.rstrip().endswith("fresh")


def test_the_demo_is_written_once_and_reused(tmp_path: Path) -> None:
    shell(tmp_path, "scale demo 1\n")
    again = shell(tmp_path, "history\n")

    assert "run 1" in again.stdout
    assert len(list((tmp_path / "demo/local/images").iterdir())) == 1


def test_user_flag_sets_who_is_typing(tmp_path: Path) -> None:
    shell(tmp_path, "scale demo 2\n")

    done = shell(tmp_path, "whoami\napprove 1\n", "shell", "--user", "ubob")

    assert "You are UBOB." in done.stdout
    assert "Approved by UBOB; starting." in done.stdout
    assert "succeeded" in done.stdout


def test_a_user_flag_that_is_no_user_id_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    done = shell(tmp_path, "scale demo 2\n", "shell", "--user", "bob")

    assert done.returncode == 2
    assert "--user 'bob' is not a Slack user id" in done.stderr
    assert "for example --user UBOB" in done.stderr
    assert done.stdout == "" and not (tmp_path / "demo").exists()  # nothing was made


def shell_scaling(root: Path, servers: int, deploy_seconds: int) -> subprocess.Popen[str]:
    """`byoi shell` on a world under ``root``/w whose deploys take ``deploy_seconds``, asked to
    scale to ``servers`` (no approval needed)."""
    slow = repr(
        f'sleep {deploy_seconds}; mkdir -p current && echo "$BYOI_RELEASE" > current/VERSION'
    )
    world = make_world(
        root / "w", config_text(deploy_command=slow, approval_required="false"), now=today()
    )
    world.store.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(root / "w/byoi.yml"), "shell"],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(f"scale web {servers}\n")
    proc.stdin.flush()
    return proc


def test_a_killed_process_resumes_its_run_on_restart(tmp_path: Path) -> None:
    proc = shell_scaling(tmp_path, servers=2, deploy_seconds=2)
    config = tmp_path / "w/byoi.yml"
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "deploy    working" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "shell"],
        input="status\nhistory\n",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert "resuming run(s) 1 left in flight" in done.stderr
    assert "web/staging: 2 server(s)" in done.stdout
    assert "scale up 0 → 2  succeeded" in done.stdout
    servers = list((tmp_path / "w/local/servers").glob("*/server.json"))
    assert len(servers) == 2  # no server was created twice


def test_ctrl_c_waits_for_the_runs_in_flight_and_a_second_one_stops_at_once(
    tmp_path: Path,
) -> None:
    proc = shell_scaling(tmp_path, servers=1, deploy_seconds=30)
    assert proc.stdout is not None
    seen = []
    for wanted, signals in (("deploy    working", 1), ("Waiting for the runs in flight", 1)):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and wanted not in (line := proc.stdout.readline()):
            seen.append(line)
        seen.append(line)
        for _ in range(signals):
            proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)

    assert proc.returncode == 130, (seen, out, err)
    assert "Stopped with runs in flight: the next start of byoi resumes them." in out
    assert "Traceback" not in err, err


def test_the_interactive_shell_on_a_terminal(tmp_path: Path) -> None:
    import pty
    import select

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "BYOI_DEMO_DIR": str(tmp_path / "demo")},
    )
    os.close(follower)
    seen = b""

    def read_until(marker: bytes, timeout: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                seen += os.read(leader, 65536)
        assert marker in seen, seen.decode(errors="replace")[-2000:]

    try:
        read_until(b"byoi (UALICE)> ")
        assert b"byoi demo: app `demo`" in seen
        os.write(leader, b"scale demo 2\n")
        read_until(b"approve 1")
        os.write(leader, b"as UBOB\n")
        read_until(b"byoi (UBOB)> ")
        os.write(leader, b"approve 1\n")
        read_until(b"succeeded")
        os.write(leader, b"quit\n")
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        os.close(leader)
