"""The stale-image scan over a large catalogue: 10,000 images across 100 apps.

The provider is emulated: an in-memory catalogue listed in pages of ``PAGE`` images, the way
EC2's DescribeImages and GCE's images.list page, filtered by family server-side. Prints the
wall time of a whole scan (median of ``ROUNDS``) and the listing calls per app.
Usage: .venv/bin/python -m bench.scan [IMAGES] [APPS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.config.loader import load_config
from pipeline.execution.scan import scan
from providers.base import Image, NotFound

PAGE = 1000
ROUNDS = 5
NOW = datetime(2026, 11, 26, tzinfo=UTC)


class PagedCatalogue:
    """Images by family, listed a page at a time; counts the pages it serves."""

    name = "local"

    def __init__(self, images: int, apps: int) -> None:
        self.images = [
            Image(
                id=f"img-{i:06d}",
                name=f"app{i % apps}-{i}",
                family=f"app{i % apps}",
                created_at=NOW - timedelta(hours=i),
                versions={"ruby_version": "3.2.2"},
            )
            for i in range(images)
        ]
        self.calls = 0

    def _pages(self, family: str) -> list[list[Image]]:
        matching = [i for i in self.images if i.family == family]
        return [matching[n : n + PAGE] for n in range(0, len(matching), PAGE)] or [[]]

    def resolve_image(self, ref: str) -> Image:
        family = ref.removeprefix("family:")
        newest: Image | None = None
        for page in self._pages(family):
            self.calls += 1
            for image in page:
                if newest is None or image.created_at > newest.created_at:
                    newest = image
        if newest is None:
            raise NotFound(ref)
        return newest


def write_config(root: Path, apps: int) -> Path:
    (root / "m.yml").write_text(
        "production:\n  rails:\n    configuration:\n      ruby_version: 3.2.2\n"
        "staging:\n  rails:\n    configuration:\n      ruby_version: 3.2.2\n"
    )
    lines = ["apps:"]
    for n in range(apps):
        lines += [
            f"  app{n}:",
            "    manifest: m.yml",
            "    provider: local",
            f"    image: family:app{n}",
            "    approvers: [UBOB]",
            "    deploy_command: 'true'",
        ]
    (root / "byoi.yml").write_text("\n".join(lines) + "\n")
    return root / "byoi.yml"


def main() -> None:
    images = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    apps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_config(Path(tmp), apps))
    catalogue = PagedCatalogue(images, apps)
    timings = []
    for _ in range(ROUNDS):
        catalogue.calls = 0
        started = time.perf_counter()
        found = scan(config, lambda _: catalogue, NOW)  # type: ignore[arg-type,return-value]
        timings.append(time.perf_counter() - started)
    envs = len(found)
    print(
        f"scan of {images} images across {apps} apps ({envs} environments), "
        f"pages of {PAGE}, median of {ROUNDS}"
    )
    print(f"wall time           {statistics.median(timings) * 1000:8.1f} ms")
    print(f"listing calls       {catalogue.calls:8d}")
    print(f"calls per app       {catalogue.calls / apps:8.2f}")
    print(
        f"calls per env       {catalogue.calls / envs:8.2f} (environments sharing an image "
        "reference share one lookup)"
    )
    findings = sum(o.findings for o in found)
    print(f"findings            {findings:8d}")


if __name__ == "__main__":
    main()
