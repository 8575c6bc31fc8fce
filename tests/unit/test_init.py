"""`byoi init`: a starter byoi.yml from each real Cloud 66 manifest, accepted once filled in."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bot import cli
from pipeline.config.loader import load_config
from tests.conftest import FIXTURES

MANIFESTS = sorted((FIXTURES / "cloud66-manifests").glob("*.yml"))
FILLED = {
    "provider": '"local"',
    "image": '"family:web"',
    "target": '"web-lb"',
    "operators": '["UALICE"]',
    "approvers": '["UBOB", "@ops"]',
    "channel": "C0123ABCD",
    "deploy_command": "'mkdir -p current'",
}
PLACEHOLDER = re.compile(r"^(\s+)(\w+): .*FILL-IN.*$", re.MULTILINE)


def fill_in(text: str) -> str:
    filled = PLACEHOLDER.sub(lambda m: f"{m.group(1)}{m.group(2)}: {FILLED[m.group(2)]}", text)
    return filled + "groups:\n  ops: [UCAROL]\n"


@pytest.mark.parametrize("source", MANIFESTS, ids=lambda p: p.name[:2])
def test_init_writes_a_byoi_yml_that_check_config_accepts_once_filled_in(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / ".cloud66" / "manifest.yml"
    manifest.parent.mkdir()
    shutil.copy(source, manifest)
    config = tmp_path / "byoi.yml"

    assert cli.main(["--config", str(config), "init", "--manifest", str(manifest)]) == 0

    written = config.read_text()
    said = capsys.readouterr().out
    assert "left to fill in" in said and "FILL-IN" in said
    assert 'manifest: ".cloud66/manifest.yml"' in written
    assert cli.check_config(config) == 1  # placeholders are not valid values
    config.write_text(fill_in(written))
    assert cli.check_config(config) == 0
    loaded = load_config(config)
    assert loaded.apps and all(
        env.approval.approvers == ("UBOB", "@ops") and env.channel == "C0123ABCD"
        for app in loaded.apps.values()
        for env in app.environments.values()
    )


def test_the_provider_comes_from_the_manifest_vendor(tmp_path: Path) -> None:
    config = tmp_path / "byoi.yml"
    by_number = {m.name[:2]: m for m in MANIFESTS}
    vendors = {"01": "aws", "02": "gcp", "03": None}  # by the fixture's number

    for manifest, provider in ((by_number[n], p) for n, p in vendors.items()):
        config.unlink(missing_ok=True)
        cli.main(["--config", str(config), "init", "--manifest", str(manifest)])
        line = next(x for x in config.read_text().splitlines() if "provider:" in x)
        assert (f"provider: {provider}" in line) if provider else ("FILL-IN" in line)


def test_init_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "byoi.yml"
    config.write_text("# mine\n")

    code = cli.main(["--config", str(config), "init", "--manifest", str(MANIFESTS[0])])

    assert code == 1 and config.read_text() == "# mine\n"
    assert "already exists" in capsys.readouterr().err
