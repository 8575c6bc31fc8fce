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


def test_a_script_that_prints_without_end_keeps_the_end_of_its_output(tmp_path: Path) -> None:
    provider, server = a_server(tmp_path)
    body = "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo 'the last words'; exit 4"

    result = provider.run_script(server, Script("deploy", body))

    assert result.exit_code == 4
    assert result.output.startswith("[the first ")  # the cut is said
    assert len(result.output) < 1_100_000
    assert result.output.rstrip().endswith("the last words")
    assert len(result.tail(3)) <= 1001 and result.tail(3).endswith("the last words")


def test_a_failed_script_with_no_output_says_so(tmp_path: Path) -> None:
    from tests.conftest import config_text, make_world, world_around

    base = make_world(tmp_path, config_text(health_command="'exit 1'"))
    base.store.close()
    world = world_around(tmp_path, base.provider, base.clock)

    run = world.scale_and_approve("scale web 1")

    assert run.servers[0].reason == "health check exited 1: (no output)"


def test_a_terminate_cut_short_leaves_the_server_listed_until_its_files_are_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    provider, server = a_server(tmp_path)
    rmtree = shutil.rmtree

    def killed(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # byoi dies after marking it terminated, before removing it

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        provider.terminate(server)
    monkeypatch.setattr(shutil, "rmtree", rmtree)

    (listed,) = provider.list_servers({})  # so the rollback or the reconciler sees it again
    provider.terminate(listed)
    assert provider.list_servers({}) == []
    assert not (tmp_path / "local" / "servers" / server.id / "rootfs").exists()
