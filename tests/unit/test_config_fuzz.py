"""Config and manifests fuzzed: any input ends in a config or a clear error, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config.loader import load_config
from pipeline.config.yamlsrc import ConfigError

KEYS = st.sampled_from(
    [
        "apps",
        "web",
        "manifest",
        "image",
        "approvers",
        "operators",
        "environments",
        "production",
        "rails",
        "configuration",
        "server",
        "servers",
        "same_as",
        "size",
        "root_disk_size",
        "cloud_image",
        "max_servers",
        "min_servers",
        "groups",
        "stale",
        "schedule",
        "deploy_command",
        "providers",
        "local",
        "aws",
        "x",
        "component",
        "default_env",
        "provider",
        "timezone",
        "database",
        "scrub_paths",
        "channel",
        "root",
        "poll_seconds",
        "version",
        "ruby_version",
        "<<",
    ]
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=12),
    st.just("m.yml"),
    st.just("family:web"),
    st.just(["UBOB"]),
)
TREES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=20,
)


def check(config_text: str, manifest_text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "byoi.yml").write_text(config_text)
        (root / "m.yml").write_text(manifest_text)
        try:
            load_config(root / "byoi.yml")
        except ConfigError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert problem.message
                assert str(problem).count(":") >= 2  # file:line: ...


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES, TREES)
def test_structured_junk_gives_a_config_or_problems(config: object, manifest: object) -> None:
    check(yaml.safe_dump(config), yaml.safe_dump(manifest))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_any_text_gives_a_config_or_problems(config: str, manifest: str) -> None:
    check(config, manifest)


@settings(max_examples=200, deadline=None)
@given(TREES)
def test_a_valid_config_survives_any_manifest(manifest: object) -> None:
    config = (
        "apps:\n  web:\n    manifest: m.yml\n    provider: local\n    image: family:web\n"
        "    approvers: [UBOB]\n    deploy_command: 'true'\n"
    )
    check(config, yaml.safe_dump(manifest))
