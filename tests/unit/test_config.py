"""byoi.yml: layering of policy keys, every problem as `file:line: key: message`, check-config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config.loader import load_config
from pipeline.config.model import DEFAULT_SCRUB_PATHS
from pipeline.config.yamlsrc import ConfigError
from tests.conftest import FIXTURES, MANIFEST, config_text

REAL = FIXTURES / "cloud66-manifests"


def write(tmp_path: Path, config: str, manifest: str = MANIFEST) -> Path:
    (tmp_path / "manifest.yml").write_text(manifest)
    path = tmp_path / "byoi.yml"
    path.write_text(config)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p).removeprefix(f"{path.parent}/") for p in caught.value.problems]


def test_policy_keys_layer_from_defaults_to_app_to_environment(tmp_path: Path) -> None:
    text = config_text(environments="{production: {approvals: 2, max_servers: 4}}").replace(
        "apps:", "defaults:\n  approval_expiry_minutes: 10\n  max_parallel: 3\napps:"
    )
    config = load_config(write(tmp_path, text))

    staging = config.apps["web"].environments["staging"]
    production = config.apps["web"].environments["production"]
    assert staging.approval.approvals == 1
    assert production.approval.approvals == 2
    assert production.max_servers == 4 and staging.max_servers == 10
    assert staging.approval.expiry_minutes == 10
    assert staging.max_parallel == 3
    assert staging.approval.self_approval is False
    assert staging.versions == {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"}
    assert staging.image == "family:web"
    assert staging.deploy.scrub_paths[: len(DEFAULT_SCRUB_PATHS)] == DEFAULT_SCRUB_PATHS
    assert "/srv/app/shared" in staging.deploy.scrub_paths
    assert config.apps["web"].default_env == "staging"
    assert config.database == tmp_path.resolve() / "byoi.db"


@pytest.mark.parametrize("fixture", sorted(p.name for p in REAL.glob("*.yml")))
def test_each_real_manifest_is_usable_from_byoi_yml(tmp_path: Path, fixture: str) -> None:
    shutil.copy(REAL / fixture, tmp_path / "m.yml")
    text = (
        "apps:\n  api:\n    manifest: m.yml\n    provider: local\n    image: family:api\n"
        "    approvers: [UBOB]\n    deploy_command: 'true'\n"
    )
    (tmp_path / "byoi.yml").write_text(text)

    config = load_config(tmp_path / "byoi.yml")

    envs = config.apps["api"].environments
    assert envs
    assert all(e.versions for e in envs.values())


def test_the_provider_follows_the_manifest_vendor(tmp_path: Path) -> None:
    shutil.copy(REAL / "02-cloud66-samples-microservices_101.manifest.yml", tmp_path / "m.yml")
    (tmp_path / "byoi.yml").write_text(
        "apps:\n  k:\n    manifest: m.yml\n    image: family:k\n    approvers: [UBOB]\n"
        "    deploy_command: 'true'\n"
    )

    env = load_config(tmp_path / "byoi.yml").apps["k"].environments["default"]

    assert env.provider == "gcp"
    assert env.spec.size == "n1-standard-2"
    assert env.spec.region == "europe-west1-b"


def test_every_problem_is_reported_with_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apps:\n"
        "  web:\n"
        "    manifest: manifest.yml\n"
        "    provider: local\n"
        "    image: family:web\n"
        "    approvers: [bob]\n"
        "    max_parallel: 0\n"
        "    colour: blue\n"
        "    deploy_command: 'true'\n"
        "    scrub_paths: [/etc]\n"
        "  worker:\n"
        "    manifest: missing.yml\n"
        "stale:\n"
        "  schedule: every day\n",
    )

    assert problems(path) == [
        "byoi.yml:6: apps.web.approvers: 'bob' is not a user id (U…/W…), user-group id "
        "(S…), @group or *; use ids, never display names",
        "byoi.yml:7: apps.web.max_parallel: must be a whole number, 1 or more",
        "byoi.yml:8: apps.web.colour: unknown key (expected one of: app_dir, "
        "approval_expiry_minutes, approval_required, approvals, approvers, bake, channel, "
        "component, default_env, deploy_command, drain_seconds, environments, health_command, "
        "image, manifest, max_parallel, max_servers, min_servers, operators, probes, provider, "
        "release, "
        "script_timeout_seconds, scrub_paths, self_approval, target)",
        "byoi.yml:10: apps.web.scrub_paths: '/etc': is too broad to scrub",
        "byoi.yml:14: stale.schedule: must be a 5-field cron line like '0 9 * * mon-fri'",
        "missing.yml:0: file not found",
    ]


def test_approval_without_approvers_and_missing_image_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apps:\n  web:\n    manifest: manifest.yml\n    provider: local\n"
        "    deploy_command: 'true'\n",
    )

    found = problems(path)

    assert (
        "byoi.yml:3: apps.web: web/staging: no image; set cloud_image in manifest.yml or "
        "image: in byoi.yml" in found
    )
    assert len(found) == 2  # one per environment: staging, production


def test_unknown_group_and_environment_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(approvers='["@nobody"]', environments="{qa: {}}"))

    found = problems(path)

    assert any("approvers: group @nobody is not defined under groups:" in p for p in found)
    assert any("apps.web.environments.qa: the manifest has no environment 'qa'" in p for p in found)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_exits_1_and_prints_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(max_parallel="0", approvals="many"))

    done = run_cli("check-config", str(path), cwd=tmp_path)

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"{path}:")
    assert lines[0].endswith(": apps.web.max_parallel: must be a whole number, 1 or more")
    assert "approvals: must be a whole number, 1 or more" in lines[1]
    assert lines[-1] == "byoi: 2 problem(s) in the configuration; not starting."


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, config_text())

    done = run_cli("check-config", str(path), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "ok (1 app(s), 2 environment(s))" in done.stdout


def test_the_shell_refuses_to_start_on_a_broken_configuration(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(max_servers="-3"))

    done = run_cli("--config", str(path), "shell", cwd=tmp_path)

    assert done.returncode == 1
    assert "max_servers: must be a whole number, 1 or more" in done.stderr
    assert "not starting" in done.stderr
