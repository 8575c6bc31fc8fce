"""Version probes: what a probe's output means, and the probe script run for real in bash."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.execution import probes
from providers.base import Server, ServerState
from providers.local import LocalProvider
from tests.conftest import START

OS_RELEASE = """\
PRETTY_NAME="Ubuntu 22.04.3 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.3 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
"""


@pytest.mark.parametrize(
    ("key", "output", "version"),
    [
        ("ruby_version", "ruby 3.2.2p53 (2023-03-30 revision e51014f9c0) [x86_64-linux]", "3.2.2"),
        ("ruby_version", "ruby 2.7.0p0 (2019-12-25 revision 647ee6f091) [x86_64-linux]", "2.7.0"),
        ("node_version", "v18.17.1", "18.17.1"),
        ("python_version", "Python 3.11.4", "3.11.4"),
        ("nginx_version", "nginx version: nginx/1.24.0", "1.24.0"),
        ("passenger_version", "Phusion Passenger(R) 6.0.18", "6.0.18"),
        ("docker_version", "Docker version 17.06.2-ce, build cec0b72", "17.06.2-ce"),
        ("redis_version", "Redis server v=7.0.11 sha=00000000:0 malloc=jemalloc-5.2.1", "7.0.11"),
        ("operating_system", OS_RELEASE, "ubuntu2204"),
        ("operating_system", 'ID=debian\nVERSION_ID="12"\n', "debian12"),
        ("operating_system", "NAME=Ubuntu\n", "unknown"),
        ("ruby_version", "", "unknown"),
        ("ruby_version", "bash: ruby: command not found", "unknown"),
    ],
)
def test_a_probe_output_gives_its_version(key: str, output: str, version: str) -> None:
    assert probes.parse(key, output) == version


def test_a_failed_or_missing_probe_reads_as_unknown() -> None:
    output = (
        "byoi-probe ruby_version 0 ruby 3.2.2p53\n"
        "byoi-probe node_version 127 bash: node: command not found\n"
        'byoi-probe operating_system 0 ID=ubuntu\x1fVERSION_ID="22.04"\n'
        "noise\n"
    )

    found = probes.read(["ruby_version", "node_version", "operating_system", "php_version"], output)

    assert found == {
        "node_version": "unknown",
        "operating_system": "ubuntu2204",
        "php_version": "unknown",
        "ruby_version": "3.2.2",
    }


def test_configured_probes_override_and_add_to_the_defaults() -> None:
    chosen = probes.probes_for(
        ["ruby_version", "operating_system", "elixir_version"],
        {"ruby_version": "/opt/ruby/bin/ruby -v", "app_version": "cat /srv/app/VERSION"},
    )

    assert chosen["ruby_version"] == "/opt/ruby/bin/ruby -v"
    assert chosen["app_version"] == "cat /srv/app/VERSION"
    assert "operating_system" in chosen
    assert "elixir_version" not in chosen  # no probe known: it will read as unknown


def test_mismatches_name_what_differs() -> None:
    declared = {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"}

    assert (
        probes.mismatches({"ruby_version": "3-2-2", "operating_system": "ubuntu2204"}, declared)
        == {}
    )
    assert probes.mismatches({"ruby_version": "3.1.2"}, declared) == {
        "operating_system": "unknown ≠ ubuntu2204",
        "ruby_version": "3.1.2 ≠ 3.2.2",
    }


def test_the_probe_script_measures_a_server_tree_and_never_runs_user_text_as_code(
    tmp_path: Path,
) -> None:
    provider = LocalProvider(tmp_path)
    image = provider.create_image(
        "probe",
        {
            "/etc/os-release": OS_RELEASE,
            "/usr/local/bin/ruby": "#!/bin/sh\necho 'ruby 3.1.2p20 (2022-04-12)'\n",
        },
        created_at=START,
    )
    from providers.base import LaunchRequest, ServerSpec

    server = provider.launch(LaunchRequest("byoi-p-1-1", "byoi-p-1-1", image, ServerSpec(), {}))
    commands = probes.probes_for(["ruby_version", "operating_system", "node_version"], {})
    commands["evil_version"] = 'echo 9.9.9; touch "$BYOI_ROOT/pwned"'
    script = probes.script(commands, 30)

    result = provider.run_script(server, script)
    found = probes.read(commands, result.output)

    assert result.ok, result.output
    assert found["ruby_version"] == "3.1.2"
    assert found["operating_system"] == "ubuntu2204"
    assert found["evil_version"] == "9.9.9"  # a configured probe is a command, by design
    assert "touch" not in script.body and "9.9.9" not in script.body
    assert isinstance(server, Server) and server.state == ServerState.RUNNING
