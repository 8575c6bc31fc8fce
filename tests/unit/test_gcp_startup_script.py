"""GCP's startup script, run with bash: each step once, stop at a failure, report through curl."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from providers.base import Script
from providers.gcp_codec import label_value, startup_script

FAKE_CURL = """#!/bin/bash
# Records each guest-attribute PUT as <name>=<value> lines.
data=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in --data) data="$2"; shift 2;; -X|-H) shift 2;; -*) shift;; *) url="$1"; shift;; esac
done
printf '%s=%s\\n' "${url##*/byoi/}" "$data" >> "$CURL_LOG"
"""


def run(tmp_path: Path, scripts: tuple[Script, ...]) -> tuple[int, dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "curl").write_text(FAKE_CURL)
    (bin_dir / "curl").chmod(0o755)
    log = tmp_path / "curl.log"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CURL_LOG": str(log),
        "BYOI_STATE_DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        ["bash", "-c", startup_script(scripts, "byoi-k-1-1")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = log.read_text().splitlines() if log.exists() else []
    return done.returncode, dict(line.split("=", 1) for line in lines)


def test_each_step_reports_its_exit_code_and_output(tmp_path: Path) -> None:
    steps = (
        Script("scrub", 'echo "scrubbing $WHAT"', {"WHAT": "$(id) ; rm -rf /"}),
        Script("deploy", "echo deployed"),
    )

    code, reported = run(tmp_path, steps)

    assert code == 0
    assert reported == {
        "scrub-output": "scrubbing $(id) ; rm -rf /",
        "scrub-exit": "0",
        "deploy-output": "deployed",
        "deploy-exit": "0",
    }


def test_a_failing_step_stops_the_rest(tmp_path: Path) -> None:
    steps = (Script("scrub", "echo cannot >&2; exit 4"), Script("deploy", "echo never"))

    code, reported = run(tmp_path, steps)

    assert code == 4
    assert reported == {"scrub-output": "cannot", "scrub-exit": "4"}


def test_a_reboot_does_not_run_finished_steps_again(tmp_path: Path) -> None:
    steps = (Script("scrub", "echo once >> $COUNT", {"COUNT": str(tmp_path / "count")}),)

    run(tmp_path, steps)
    run(tmp_path, steps)

    assert (tmp_path / "count").read_text() == "once\n"


def test_label_values_fit_gce_rules() -> None:
    assert label_value("2.7.0") == "2-7-0"
    assert label_value("Ubuntu 22.04") == "ubuntu-22-04"
    assert len(label_value("x" * 100)) == 63
