"""Scripts over SSH against a real SSH server: retries while sshd starts, timeouts, pinning."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.base import AuthError, ProviderTimeout, Script
from providers.ssh import PinnedHosts, SshRunner, SshTarget, ensure_key_pair
from tests.fakes.sshd import FakeHosts


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[FakeHosts]:
    found = FakeHosts(tmp_path / "droplets")
    yield found
    found.close()


def runner_for(tmp_path: Path, hosts: FakeHosts, connect_seconds: float = 10) -> SshRunner:
    keys = ensure_key_pair(tmp_path / "ssh")
    return SshRunner(
        keys, PinnedHosts(tmp_path / "ssh" / "known_hosts"), connect_seconds=connect_seconds
    )


def test_the_key_pair_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first = ensure_key_pair(tmp_path / "ssh")
    again = ensure_key_pair(tmp_path / "ssh")

    assert first == again
    assert first.public_key.startswith("ssh-ed25519 ")
    assert len(first.fingerprint.split(":")) == 16
    assert (tmp_path / "ssh" / "id_ed25519").stat().st_mode & 0o777 == 0o600


def test_a_connection_waits_for_sshd_to_start(tmp_path: Path, hosts: FakeHosts) -> None:
    runner = runner_for(tmp_path, hosts)
    address = hosts.address()
    hosts.add(1, address, None, [runner.keys.public_key])
    threading.Timer(1.0, hosts.start, [1]).start()

    started = time.monotonic()
    result = runner.run(SshTarget("1", address, hosts.port), Script("t", "echo $((6 * 7))"))

    assert result.ok and result.output.strip() == "42"
    assert time.monotonic() - started >= 1.0


def test_a_step_longer_than_its_timeout_is_stopped(tmp_path: Path, hosts: FakeHosts) -> None:
    runner = runner_for(tmp_path, hosts)
    address = hosts.address()
    hosts.add(1, address, None, [runner.keys.public_key])
    hosts.start(1)

    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match=r"within 0\.5s"):
        runner.run(SshTarget("1", address, hosts.port), Script("slow", "sleep 5", {}, 0.5))

    assert time.monotonic() - started < 4


def test_parameters_arrive_verbatim_and_are_never_run(tmp_path: Path, hosts: FakeHosts) -> None:
    runner = runner_for(tmp_path, hosts)
    address = hosts.address()
    host = hosts.add(1, address, None, [runner.keys.public_key])
    hosts.start(1)
    hostile = "$(touch pwned); `touch pwned2`; ' \" \\ \n line two"

    result = runner.run(
        SshTarget("1", address, hosts.port), Script("t", 'printf %s "$X"', {"X": hostile})
    )

    assert result.output == hostile
    assert not (host.root / "pwned").exists() and not (host.root / "pwned2").exists()
    assert hostile not in host.commands[0]


def test_an_unknown_key_is_refused_without_retrying(tmp_path: Path, hosts: FakeHosts) -> None:
    runner = runner_for(tmp_path, hosts)
    address = hosts.address()
    hosts.add(1, address, None, [])
    hosts.start(1)

    with pytest.raises(AuthError, match="refused byoi's SSH key"):
        runner.run(SshTarget("1", address, hosts.port), Script("t", "true"))


def test_output_that_is_not_utf8_is_still_the_scripts_output(
    tmp_path: Path, hosts: FakeHosts
) -> None:
    runner = runner_for(tmp_path, hosts)
    address = hosts.address()
    hosts.add(1, address, None, [runner.keys.public_key])
    hosts.start(1)

    result = runner.run(
        SshTarget("1", address, hosts.port), Script("deploy", r"printf 'caf\351\n'; echo done")
    )

    assert result.ok and result.output.splitlines() == ["caf\ufffd", "done"]
