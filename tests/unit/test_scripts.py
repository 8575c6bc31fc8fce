"""The scrub, deploy and health scripts, run with bash against a temporary root tree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pipeline.config.model import DeployConfig
from pipeline.execution import scripts
from tests.conftest import IMAGE_FILES, config_text, make_world


def tree(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def run(script: scripts.Script, root: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **script.env, "BYOI_ROOT": str(root)}
    return subprocess.run(
        ["bash", "-c", script.body],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def scrub_paths(where: Path, *extra: str) -> DeployConfig:
    """What byoi.yml makes of an app with the default app_dir and ``extra`` scrub_paths."""
    keys = {"scrub_paths": json.dumps(list(extra))} if extra else {}
    world = make_world(where / "config", config_text(**keys))
    world.store.close()
    return world.config.apps["web"].environments["staging"].deploy


def test_scrub_removes_identity_release_and_secrets_and_keeps_the_rest(tmp_path: Path) -> None:
    tree(tmp_path, {**IMAGE_FILES, "/var/log/cloud-init.log": "x", "/opt/keep/me": "yes"})

    done = run(scripts.scrub(scrub_paths(tmp_path)), tmp_path)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "etc/machine-id").read_text() == ""
    assert not list((tmp_path / "etc/ssh").iterdir())
    for gone in (
        "var/lib/cloud/instances",
        "srv/app/current",
        "srv/app/shared",
        "srv/app/.env",
        "var/log/cloud-init.log",
    ):
        assert not (tmp_path / gone).exists(), gone
    assert (tmp_path / "etc/hostname").exists()
    assert (tmp_path / "opt/keep/me").read_text() == "yes"
    assert "emptied /etc/machine-id" in done.stdout
    assert "removed /etc/ssh/ssh_host_rsa_key" in done.stdout
    assert "removed /srv/app/shared" in done.stdout


def test_scrub_takes_configured_paths_with_globs(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "/home/deploy/.bash_history": "secret",
            "/tmp/a.pid": "1",
            "/tmp/b.pid": "2",
            "/tmp/keep.txt": "k",
        },
    )

    done = run(
        scripts.scrub(scrub_paths(tmp_path, "/home/deploy/.bash_history", "/tmp/*.pid")), tmp_path
    )

    assert done.returncode == 0
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == ["keep.txt"]
    assert not (tmp_path / "home/deploy/.bash_history").exists()


def test_scrub_refuses_unsafe_paths_and_a_relative_root(tmp_path: Path) -> None:
    tree(tmp_path, {"/etc/keep": "k"})
    for bad in ("etc", "/srv/../etc", "/srv/a b"):
        done = run(
            scripts.Script("scrub", scripts.source("scrub"), {"BYOI_SCRUB_PATHS": bad}), tmp_path
        )
        assert done.returncode == 2, bad
    relative = subprocess.run(
        ["bash", "-c", scripts.source("scrub")],
        env={"PATH": "/usr/bin:/bin", "BYOI_ROOT": "relative/dir", "BYOI_SCRUB_PATHS": "/etc"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert relative.returncode == 2
    assert (tmp_path / "etc/keep").exists()


def test_parameters_never_become_shell_code(tmp_path: Path) -> None:
    config = DeployConfig(command='echo "release=$BYOI_RELEASE" > out', release="v1; touch pwned")

    done = run(
        scripts.Script(
            "deploy", scripts.source("deploy"), {**scripts.deploy(config, _run(), "k").env}
        ),
        tmp_path,
    )

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "srv/app/out").read_text() == "release=v1; touch pwned\n"
    assert not list(tmp_path.rglob("pwned"))


def test_health_reports_the_command_exit_code(tmp_path: Path) -> None:
    (tmp_path / "srv/app").mkdir(parents=True)

    ok = run(scripts.health(DeployConfig(health_command="true"), _run(), "k"), tmp_path)
    bad = run(
        scripts.health(DeployConfig(health_command="echo down; exit 7"), _run(), "k"), tmp_path
    )

    assert ok.returncode == 0 and "health: ok" in ok.stdout
    assert bad.returncode == 7 and "down" in bad.stdout


def test_health_knows_the_server_and_its_run_as_deploy_does(tmp_path: Path) -> None:
    (tmp_path / "srv/app").mkdir(parents=True)
    config = DeployConfig(health_command='echo "$BYOI_SERVER $BYOI_RUN $BYOI_RELEASE $BYOI_APP"')

    done = run(scripts.health(config, _run(), "byoi-k-1-2"), tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"byoi-k-1-2 {_run().id} {config.release} {_run().app}"


def _run():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from pipeline.domain.models import Run, RunKind, RunState, Strategy

    now = datetime.now(UTC)
    return Run(
        1,
        RunKind.SCALE_UP,
        "web",
        "staging",
        RunState.RUNNING,
        "U1",
        now,
        now,
        0,
        1,
        "img",
        "img",
        Strategy.PARALLEL,
        1,
        "lb",
        0,
        None,
    )
