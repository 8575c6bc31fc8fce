"""The documentation names every configuration key byoi accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config.keys import APP_KEYS, POLICY_KEYS, PROVIDER_KEYS, TOP_KEYS

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


@pytest.mark.parametrize("key", sorted({*POLICY_KEYS, *APP_KEYS, *TOP_KEYS}))
def test_every_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in DOC.read_text()


@pytest.mark.parametrize(
    "key",
    ["stale.max_age_days", "stale.schedule", "stale.interval_seconds", "stale.remind_every"],
)
def test_every_stale_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in DOC.read_text()


@pytest.mark.parametrize(
    "key", sorted(f"providers.{p}.{k}" for p, keys in PROVIDER_KEYS.items() for k in keys)
)
def test_every_provider_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in DOC.read_text()


def test_an_aws_only_start_never_imports_the_gcp_or_digitalocean_sdks(tmp_path: Path) -> None:
    """google.cloud.compute_v1 costs seconds and ~150 MB: only an app on GCP may load it;
    pydo and asyncssh likewise only for an app on DigitalOcean."""
    import subprocess
    import sys

    (tmp_path / "m.yml").write_text("production:\n  rails:\n    server:\n      vendor: aws\n")
    (tmp_path / "byoi.yml").write_text(
        "providers:\n  aws:\n    region: us-east-1\napps:\n  api:\n    manifest: m.yml\n"
        "    image: ami-12345678\n    approvers: [UBOB]\n    deploy_command: 'true'\n"
    )
    code = (
        "import sys; from pathlib import Path\n"
        "import bot.cli, bot.slack.serve, bot.slack.app\n"
        "from bot.wiring import build\n"
        "from pipeline.config.loader import load_config\n"
        f"app = build(load_config(Path({str(tmp_path / 'byoi.yml')!r})), None)\n"
        "print('google.cloud.compute_v1' in sys.modules, 'boto3' in sys.modules,\n"
        "      'pydo' in sys.modules, 'asyncssh' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "False", "False"]
