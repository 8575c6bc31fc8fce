"""byoi.yml: layering of policy keys, every problem as `file:line: key: message`, check-config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.config.loader import load_config
from pipeline.config.manifest import APP_TYPES
from pipeline.config.model import DEFAULT_SCRUB_PATHS, ThreadUpdates
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
    return [str(p).replace(f"{path.parent}/", "") for p in caught.value.problems]


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
    assert all(e.image == "family:api" and e.component in APP_TYPES for e in envs.values())


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
        "release, script_timeout_seconds, scrub_paths, self_approval, target, thread_updates)",
        "byoi.yml:10: apps.web.scrub_paths: '/etc': is too broad to scrub",
        "byoi.yml:14: stale.schedule: must be a 5-field cron line like '0 9 * * mon-fri'",
        "missing.yml:0: file not found",
    ]


def test_a_value_still_marked_fill_in_is_the_problem_on_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "apps:\n"
        "  web:\n"
        "    manifest: manifest.yml\n"
        "    provider: local\n"
        "    image: family:web\n"
        "    approval_required: false\n"
        '    target: "<FILL-IN: the load balancer>"\n'
        '    deploy_command: "FILL-IN"\n',
    )

    assert problems(path) == [
        "byoi.yml:7: apps.web.target: still a FILL-IN placeholder: replace it",
        "byoi.yml:8: apps.web.deploy_command: still a FILL-IN placeholder: replace it",
    ]


def test_thread_updates_and_remind_every_have_defaults_and_are_checked(tmp_path: Path) -> None:
    quiet = config_text(environments="{production: {thread_updates: failures}}")
    config = load_config(
        write(tmp_path, quiet.replace("apps:", "stale:\n  remind_every: 12h\napps:"))
    )
    envs = config.apps["web"].environments

    assert envs["staging"].thread_updates == ThreadUpdates.PHASES
    assert envs["production"].thread_updates == ThreadUpdates.FAILURES
    assert config.stale.remind_every == timedelta(hours=12)
    wrong = config_text(thread_updates="steps").replace(
        "apps:", "stale:\n  remind_every: often\napps:"
    )
    assert problems(write(tmp_path, wrong)) == [
        "byoi.yml:8: stale.remind_every: must be a duration like 1d, 12h, 30m or 90s",
        "byoi.yml:23: apps.web.thread_updates: must be phases or failures",
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
    assert lines[-1] == "byoi: 2 problems in the configuration."


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


APP = (
    "apps:\n  api:\n    manifest: m.yml\n    provider: local\n    image: family:api\n"
    "    approvers: [UBOB]\n    deploy_command: 'true'\n"
)


def with_manifest(tmp_path: Path, manifest: str, config: str = APP) -> Path:
    (tmp_path / "m.yml").write_text(manifest)
    (tmp_path / "byoi.yml").write_text(config)
    return tmp_path / "byoi.yml"


def test_environments_without_the_app_component_are_left_out_unless_named(
    tmp_path: Path,
) -> None:
    shutil.copy(REAL / "90-written-external-and-database-only.manifest.yml", tmp_path / "m.yml")
    (tmp_path / "byoi.yml").write_text(APP)

    envs = load_config(tmp_path / "byoi.yml").apps["api"].environments

    assert list(envs) == ["production"]
    assert envs["production"].versions == {"ruby_version": "2.10", "node_version": "10.10"}


def test_a_named_environment_without_the_app_component_is_reported_at_the_manifest(
    tmp_path: Path,
) -> None:
    shutil.copy(REAL / "90-written-external-and-database-only.manifest.yml", tmp_path / "m.yml")
    (tmp_path / "byoi.yml").write_text(
        APP + "    environments:\n      development: {approvals: 2}\n"
    )

    assert problems(tmp_path / "byoi.yml") == [
        "m.yml:23: development: has no application component (rails, rack, node, docker, "
        "sinatra, padrino), only postgresql, and byoi.yml uses this environment"
    ]


def test_a_manifest_with_no_app_component_anywhere_says_so_once(tmp_path: Path) -> None:
    path = with_manifest(tmp_path, "mysql:\n  server: external\nredis: {}\n")

    assert problems(path) == [
        "m.yml:1: has no application component (rails, rack, node, docker, sinatra, padrino)"
    ]


def test_a_wanted_component_missing_from_an_environment_names_what_is_there(
    tmp_path: Path,
) -> None:
    path = with_manifest(
        tmp_path,
        "production:\n  rails: {}\nstaging:\n  rails: {}\n  worker: {}\n",
        APP + "    component: worker\n    environments:\n      production: {}\n",
    )

    assert problems(path) == [
        "m.yml:1: production: has no 'worker' component, only rails, and byoi.yml uses this "
        "environment"
    ]


def test_an_app_given_twice_names_both_lines(tmp_path: Path) -> None:
    path = with_manifest(tmp_path, MANIFEST, APP + APP.removeprefix("apps:\n"))

    assert problems(path) == ["byoi.yml:8: apps.api: is given twice (lines 2 and 8); keep one"]


def test_timezone_database_and_every_scrub_path_are_checked(tmp_path: Path) -> None:
    path = with_manifest(
        tmp_path,
        MANIFEST,
        "timezone: Mars/Olympus\ndatabase: [1]\n"
        + APP
        + "    scrub_paths:\n      - /srv/app/tmp\n      - relative/path\n      - /etc\n"
        "      - /var/../etc\n",
    )

    assert problems(path) == [
        "byoi.yml:1: timezone: 'Mars/Olympus' is not a time zone; use a name like UTC or "
        "Europe/London",
        "byoi.yml:2: database: must be the path of a SQLite file",
        "byoi.yml:12: apps.api.scrub_paths: 'relative/path': must be an absolute path of plain "
        "characters, without '..'",
        "byoi.yml:13: apps.api.scrub_paths: '/etc': is too broad to scrub",
        "byoi.yml:14: apps.api.scrub_paths: '/var/../etc': must be an absolute path of plain "
        "characters, without '..'",
    ]


def test_a_long_app_name_is_told_its_length(tmp_path: Path) -> None:
    name = "a" * 40
    path = with_manifest(tmp_path, MANIFEST, APP.replace("  api:", f"  {name}:"))

    assert problems(path) == [
        f"byoi.yml:2: apps.{name}: app names are at most 31 characters (this one has 40)"
    ]
    assert load_config(
        with_manifest(tmp_path, MANIFEST, APP.replace("  api:", f"  {'a' * 31}:"))
    ).apps


HOSTILE = {
    "alias bomb": (
        'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]\n'
        + "".join(
            f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n"
            for p, n in zip("abcde", "bcdef", strict=True)
        )
    ),
    "recursive alias": "a: &a {b: *a}\n",
}


@pytest.mark.parametrize("where", ["byoi.yml", "manifest"])
@pytest.mark.parametrize("kind", ["alias bomb", "recursive alias", "/dev/zero", "fifo"])
def test_check_config_refuses_hostile_files_fast_with_one_line(
    tmp_path: Path, kind: str, where: str
) -> None:
    import os
    import time

    target = tmp_path / ("byoi.yml" if where == "byoi.yml" else "m.yml")
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "/dev/zero":
        target.symlink_to("/dev/zero")
    else:
        target.write_text(HOSTILE[kind])
    if where == "manifest":
        (tmp_path / "byoi.yml").write_text(APP)

    started = time.monotonic()
    with pytest.raises(ConfigError):
        load_config(tmp_path / "byoi.yml")
    assert time.monotonic() - started < 1
    done = run_cli("check-config", "byoi.yml", cwd=tmp_path)

    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"{target.name}:") and "Traceback" not in done.stderr
    assert "not starting" not in line


def test_manifest_paths_are_shown_from_the_working_directory(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    with_manifest(conf, "production:\n  rails:\n    server: {root_disk_size: -1}\n")

    done = run_cli("check-config", "conf/byoi.yml", cwd=tmp_path)

    assert done.stderr.startswith("conf/m.yml:3: production.rails.server.root_disk_size:")


def test_app_keys_and_provider_settings_of_the_wrong_type_are_reported(tmp_path: Path) -> None:
    path = with_manifest(
        tmp_path,
        MANIFEST,
        "providers:\n  local: {root: [1]}\n  aws: {poll_seconds: soon, max_attempts: 0}\n"
        + APP.replace("    provider: local\n", "    provider: [local]\n")
        + "    component: [rails]\n    default_env: {a: 1}\n"
        "    environments:\n      production: [1]\n",
    )

    assert problems(path) == [
        "byoi.yml:2: providers.local.root: must be a string, not [1]",
        "byoi.yml:3: providers.aws.poll_seconds: must be a number of seconds, more than 0, "
        "not 'soon'",
        "byoi.yml:3: providers.aws.max_attempts: must be a whole number, 1 or more, not 0",
        "byoi.yml:7: apps.api.provider: must be local, aws, gcp or digitalocean, not ['local']",
        "byoi.yml:11: apps.api.component: must be a component type, like rails, not ['rails']",
        "byoi.yml:12: apps.api.default_env: must be an environment name, not {'a': 1}",
        "byoi.yml:14: apps.api.environments.production: must be a map of policy keys, like "
        "{approvals: 2}",
    ]


def test_digitalocean_settings_of_the_wrong_type_are_reported(tmp_path: Path) -> None:
    path = with_manifest(
        tmp_path,
        MANIFEST,
        "providers:\n  digitalocean:\n    ssh_port: '22'\n    ssh_network: vpn\n"
        "    ssh_wait_seconds: 0\n    max_attempts: many\n    region: [ams3]\n" + APP,
    )

    assert problems(path) == [
        "byoi.yml:3: providers.digitalocean.ssh_port: must be a port number, 1 to 65535, not '22'",
        "byoi.yml:4: providers.digitalocean.ssh_network: must be public or private, not 'vpn'",
        "byoi.yml:5: providers.digitalocean.ssh_wait_seconds: must be a number of seconds, "
        "more than 0, not 0",
        "byoi.yml:6: providers.digitalocean.max_attempts: must be a whole number, 1 or more, "
        "not 'many'",
        "byoi.yml:7: providers.digitalocean.region: must be a string, not ['ams3']",
    ]


def test_digitalocean_settings_of_the_right_type_are_accepted(tmp_path: Path) -> None:
    path = with_manifest(
        tmp_path,
        MANIFEST,
        "providers:\n  digitalocean:\n    ssh_port: 2222\n    ssh_network: private\n"
        "    ssh_wait_seconds: 30\n    max_attempts: 3\n    region: ams3\n" + APP,
    )

    settings = load_config(path).providers["digitalocean"]
    assert settings["ssh_port"] == 2222 and settings["ssh_network"] == "private"


def test_more_approvals_than_named_approvers_could_give_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(environments="{production: {approvals: 4}}"))

    found = problems(path)

    assert len(found) == 1, found
    assert found[0].endswith(
        "web/production: approvals is 4 but only 3 approver(s) are named (UALICE, UBOB, "
        "UCAROL), so no run could ever be approved; lower approvals or name more approvers"
    )
    # Three named approvers can give three approvals; a Slack user group's size is unknown.
    load_config(write(tmp_path, config_text(environments="{production: {approvals: 3}}")))
    slack_group = config_text(approvers='["S0OPS"]', environments="{production: {approvals: 9}}")
    load_config(write(tmp_path, slack_group))


def test_a_script_timeout_must_give_scripts_some_time_but_a_drain_may_be_none(
    tmp_path: Path,
) -> None:
    path = with_manifest(
        tmp_path, MANIFEST, APP + "    script_timeout_seconds: 0\n    drain_seconds: 0\n"
    )

    (problem,) = problems(path)
    assert problem.endswith(
        "apps.api.script_timeout_seconds: must be a number of seconds, more than 0"
    )
