"""The local provider runs a script as a server would: in a session of its own (a Ctrl-C in
byoi's terminal never reaches it), and a timeout ends everything the script started."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from providers.base import LaunchRequest, ProviderTimeout, Script, Server, ServerSpec
from providers.local import LocalProvider
from tests.conftest import IMAGE_FILES, START


def a_server(tmp_path: Path) -> tuple[LocalProvider, Server]:
    provider = LocalProvider(tmp_path / "local")
    image = provider.create_image("base", IMAGE_FILES, created_at=START)
    server = provider.launch(LaunchRequest("byoi-s-1-1", "byoi-s-1-1", image, ServerSpec(), {}))
    return provider, server


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_script_runs_in_its_own_session(tmp_path: Path) -> None:
    provider, server = a_server(tmp_path)
    result = provider.run_script(server, Script("ids", 'echo "$(ps -o sid= -p $$)"'))
    assert result.ok and int(result.output.strip()) != os.getsid(0)


def test_a_timeout_ends_what_the_script_started(tmp_path: Path) -> None:
    provider, server = a_server(tmp_path)
    body = 'sleep 60 & echo $! > "$BYOI_ROOT/child"; wait'
    with pytest.raises(ProviderTimeout, match=r"did not finish within 0\.5s"):
        provider.run_script(server, Script("deploy", body, timeout_seconds=0.5))
    child = int(next((tmp_path / "local").rglob("child")).read_text())
    deadline = time.monotonic() + 5
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)  # reaped by init once killed
    assert gone(child), f"the script's child {child} outlived the timeout"
