"""Cloud 66 manifests: the three real ones parse, malformed ones get exact `file:line` errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import manifest
from pipeline.config.yamlsrc import ConfigError
from tests.conftest import FIXTURES

REAL = FIXTURES / "cloud66-manifests"


def read(path: Path) -> manifest.Manifest:
    return manifest.read(path, path.name)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "m.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        manifest.read(path, "m.yml")
    return [str(p) for p in caught.value.problems]


def test_environments_with_singular_server_and_per_environment_sizes() -> None:
    parsed = read(REAL / "01-cortex-cms-cortex.manifest.yml")

    assert parsed.environment_names() == ["development", "staging", "production"]
    rails = parsed.app_component("production")
    assert rails is not None and rails.type == "rails"
    assert rails.versions == {"ruby_version": "2.4.1"}
    (server,) = rails.servers
    assert server.vendor == "aws"
    assert server.fields["size"] == "c4.xlarge"
    assert parsed.app_component("development").servers[0].fields["size"] == "m3.medium"  # type: ignore[union-attr]
    known, extra = manifest.spec_fields(server)
    assert known == {"size": "c4.xlarge", "region": "us-east-1", "root_disk_gb": 50}
    assert extra == {}
    assert "load_balancer" in parsed.components("development")
    assert parsed.components("production")["postgresql"].versions == {"postgresql_version": "9.6.3"}


def test_no_environment_level_servers_list_same_as_and_quoted_versions() -> None:
    parsed = read(REAL / "02-cloud66-samples-microservices_101.manifest.yml")

    assert not parsed.has_environments
    docker = parsed.app_component("anything")
    assert docker is not None and docker.type == "docker"
    assert docker.versions == {"docker_version": "17.06.2-ce"}
    assert docker.servers[0].vendor == "googlecloud"
    rabbit = parsed.components("production")["rabbitmq"]
    assert rabbit.versions == {}  # version: '' declares nothing
    assert rabbit.servers[0].unique_name == "database-host"  # same_as resolved
    assert rabbit.servers[0].fields["size"] == "n1-standard-1"
    assert parsed.components("x")["mysql"].versions == {"mysql_version": "5.7"}


def test_anchors_merge_keys_and_custom_environment_names() -> None:
    parsed = read(REAL / "03-CredentialEngine-CredentialRegistry.manifest.yml")

    assert parsed.environment_names() == [
        "production",
        "development",
        "sandbox",
        "staging",
        "disaster_recovery",
    ]
    for env in parsed.environment_names():
        rack = parsed.app_component(env)
        assert rack is not None and rack.type == "rack"
        assert rack.versions == {"operating_system": "ubuntu2004", "ruby_version": "3.1.2"}
        assert rack.configuration["custom_deploy_command"] == "bin/rake db:migrate"
        assert rack.servers == ()


def test_cloud_image_and_unknown_keys_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text(
        "production:\n  rails:\n    configuration:\n      ruby_version: 2.7.0\n"
        "      asset_pipeline_precompile: true\n      cloud_image: family:api\n"
        "    future_key: {a: 1}\n"
    )
    rails = manifest.read(path).app_component("production")

    assert rails is not None
    assert rails.cloud_image == "family:api"
    assert rails.configuration["asset_pipeline_precompile"] is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1\n", ["m.yml:2: invalid YAML: did not find expected ',' or ']'"]),
        ("- just\n- a list\n", ["m.yml:1: a manifest must be a map of environments or components"]),
        (
            "production:\n  rails:\n    server:\n      root_disk_size: big\n",
            [
                "m.yml:4: production.rails.server.root_disk_size: must be a whole number of GB, "
                "not 'big'"
            ],
        ),
        (
            "docker:\n  servers:\n  - server:\n      unique_name: a\n  - oops\n",
            ["m.yml:5: docker.servers[1]: each entry must be `- server: {...}`"],
        ),
        (
            "docker:\n  servers:\n  - server:\n      same_as: ghost\n",
            [
                "m.yml:4: docker.servers[0].server.same_as: no server named 'ghost' "
                "(servers here: none)"
            ],
        ),
        (
            "production:\n  rails:\n    configuration:\n      cloud_image: [x]\n",
            [
                "m.yml:4: production.rails.configuration.cloud_image: must be an image id, name "
                "or family:<name>"
            ],
        ),
        (
            "production:\n  rails: 3\n",
            ["m.yml:2: production.rails: a component must be a map"],
        ),
        (
            "rails:\n  configuration: {}\nstaging:\n  rails: {}\n",
            ["m.yml:1: rails: components and environments are mixed at the top level"],
        ),
    ],
)
def test_malformed_manifests_report_exact_lines(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    assert problems(tmp_path, text) == expected


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "production:\n  rails:\n    server:\n      root_disk_size: -1\n"
        "  docker:\n    servers: nope\n",
    )

    assert len(found) == 2
    assert found[0].startswith("m.yml:4:")
    assert found[1] == "m.yml:6: production.docker.servers: must be a list of `- server:` entries"


def test_databases_and_other_components_are_not_held_to_app_rules() -> None:
    parsed = read(REAL / "90-written-external-and-database-only.manifest.yml")

    components = parsed.components("production")
    assert components["mysql"].servers == ()  # server: external
    assert components["redis"].servers[0].unique_name == "web"  # server: web, resolved
    assert components["elasticsearch"].servers == ()  # same_as a server byoi does not know
    assert components["elasticsearch"].versions == {"elasticsearch_version": "7.10"}
    assert parsed.components("development")["postgresql"].versions == {"postgresql_version": "9.6"}
    assert parsed.app_component("development") is None


def test_versions_keep_the_text_written_not_a_float() -> None:
    rails = read(REAL / "90-written-external-and-database-only.manifest.yml").app_component(
        "production"
    )

    assert rails is not None
    assert rails.versions == {"ruby_version": "2.10", "node_version": "10.10"}


@pytest.mark.parametrize(
    "text",
    [
        "production:\n  rails: {}\n  mysql: {servers: nope}\n  redis: 3\n",
        "production:\n  rails: {}\n  postgresql: {server: {root_disk_size: big}}\n",
        "production:\n  rails: {}\n  redis: {server: [a, b], configuration: [x]}\n",
    ],
)
def test_odd_shapes_in_non_app_components_are_kept_not_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "m.yml"
    path.write_text(text)

    assert manifest.read(path).app_component("production") is not None


def test_a_component_byoi_yml_names_is_held_to_app_rules(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text("production:\n  worker:\n    server: {root_disk_size: big}\n")

    with pytest.raises(ConfigError) as caught:
        manifest.read(path, "m.yml", component="worker")

    assert [str(p) for p in caught.value.problems] == [
        "m.yml:3: production.worker.server.root_disk_size: must be a whole number of GB, not 'big'"
    ]


def test_a_string_server_that_names_nothing_is_an_error_for_the_app() -> None:
    assert problems_of_text("production:\n  rails:\n    server: ghost\n") == [
        "m.yml:3: production.rails.server.same_as: no server named 'ghost' (servers here: none)"
    ]


def problems_of_text(text: str) -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return problems(Path(tmp), text)


def test_top_level_keys_that_only_hold_anchors_are_not_environments() -> None:
    parsed = read(REAL / "91-written-templates.manifest.yml")

    assert parsed.environment_names() == ["production", "staging"]
    assert parsed.templates == {"default", "extra"}
    production = parsed.app_component("production")
    assert production is not None
    assert production.versions == {"ruby_version": "3.2.5", "operating_system": "ubuntu2204"}
    staging = parsed.app_component("staging")
    assert staging is not None
    assert staging.versions == {"ruby_version": "3.3.0", "operating_system": "ubuntu2204"}
    assert staging.configuration["asset_pipeline_precompile"] is False


def test_an_anchored_standard_environment_stays_an_environment(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text(
        "staging: &staging\n  rails: {configuration: {ruby_version: 3.2.2}}\n"
        "production:\n  <<: *staging\n"
    )

    assert manifest.read(path).environment_names() == ["staging", "production"]


def test_environment_lines_are_kept() -> None:
    parsed = read(REAL / "01-cortex-cms-cortex.manifest.yml")

    assert [parsed.line_of(e) for e in parsed.environment_names()] == sorted(
        parsed.line_of(e) for e in parsed.environment_names()
    )
    assert parsed.line_of("development") == 1
