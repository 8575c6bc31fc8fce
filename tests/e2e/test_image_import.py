"""`byoi image import`: a directory becomes a local image with measured versions; scale uses it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.conftest import MANIFEST, config_text
from tests.e2e.test_shell import shell

RUBY = "#!/bin/sh\necho 'ruby 3.2.2p53 (2023-03-30 revision e51014f9c0) [x86_64-linux]'\n"


def image_tree(root: Path, ruby: str = RUBY) -> Path:
    tree = root / "tree"
    (tree / "usr/local/bin").mkdir(parents=True)
    (tree / "usr/local/bin/ruby").write_text(ruby)
    (tree / "usr/local/bin/ruby").chmod(0o755)
    (tree / "etc").mkdir()
    (tree / "etc/os-release").write_text('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n')
    (tree / "etc/machine-id").write_text("source-machine\n")
    return tree


def setup(root: Path) -> Path:
    (root / "manifest.yml").write_text(MANIFEST)
    (root / "byoi.yml").write_text(textwrap.dedent(config_text()))
    return root / "byoi.yml"


def images(root: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in (root / "local/images").glob("img-*/image.json")]


def test_an_imported_directory_is_measured_then_scaled_from_in_the_shell(tmp_path: Path) -> None:
    config = setup(tmp_path)
    tree = image_tree(tmp_path)

    done = shell(
        tmp_path, "", "--config", str(config), "image", "import", str(tree), "--app", "web"
    )

    assert done.returncode == 0, done.stderr
    (image,) = images(tmp_path)
    assert image["versions"] == {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"}
    assert image["family"] == "web" and image["state"] == "ready"
    assert "ruby_version: 3.2.2" in done.stdout and "operating_system: ubuntu2204" in done.stdout
    probes = list((tmp_path / "local/servers").glob("byoi-probe-*/server.json"))
    assert [json.loads(p.read_text())["state"] for p in probes] == ["terminated"]

    ran = shell(tmp_path, "scale web 1\nas UBOB\napprove 1\n", "--config", str(config))

    assert ran.returncode == 0, ran.stderr
    assert str(image["name"]) in ran.stdout and "succeeded" in ran.stdout
    (server,) = [
        json.loads(p.read_text())
        for p in (tmp_path / "local/servers").glob("*/server.json")
        if "probe" not in p.parent.name
    ]
    assert server["image_id"] == image["id"] and server["state"] == "running"
    rootfs = tmp_path / "local/servers" / str(server["id"]) / "rootfs"
    assert (rootfs / "etc/machine-id").read_text() == ""  # scrubbed like any clone


def test_versions_are_what_the_tree_reports_not_what_the_manifest_declares(
    tmp_path: Path,
) -> None:
    config = setup(tmp_path)
    tree = image_tree(tmp_path, ruby="#!/bin/sh\necho 'ruby 3.1.2p20'\n")

    done = shell(
        tmp_path, "", "--config", str(config), "image", "import", str(tree), "--app", "web"
    )

    assert done.returncode == 0, done.stderr
    (image,) = images(tmp_path)
    assert image["versions"] == {"ruby_version": "3.1.2", "operating_system": "ubuntu2204"}
    assert "ruby_version: 3.1.2 (the manifest declares 3.2.2)" in done.stdout


def test_import_refuses_a_cloud_app(tmp_path: Path) -> None:
    setup(tmp_path)
    config = tmp_path / "byoi.yml"
    config.write_text(config.read_text().replace("provider: local", "provider: aws"))

    done = shell(tmp_path, "", "--config", str(config), "image", "import", "x", "--app", "web")

    assert done.returncode == 2 and "for the local provider" in done.stderr


def test_import_runs_the_apps_configured_probes_as_every_clone_does(tmp_path: Path) -> None:
    (tmp_path / "manifest.yml").write_text(MANIFEST)
    probes = """{ruby_version: 'cat "$BYOI_ROOT/opt/ruby/VERSION"', app_version: 'echo v7.1'}"""
    (tmp_path / "byoi.yml").write_text(textwrap.dedent(config_text(probes=probes)))
    tree = image_tree(tmp_path)
    (tree / "opt/ruby").mkdir(parents=True)
    (tree / "opt/ruby/VERSION").write_text("3.3.1\n")

    done = shell(
        tmp_path,
        "",
        "--config",
        str(tmp_path / "byoi.yml"),
        "image",
        "import",
        str(tree),
        "--app",
        "web",
    )

    assert done.returncode == 0, done.stderr
    (image,) = images(tmp_path)
    assert image["versions"] == {
        "app_version": "7.1",
        "operating_system": "ubuntu2204",
        "ruby_version": "3.3.1",
    }
