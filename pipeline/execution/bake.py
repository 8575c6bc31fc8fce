"""Baking an image: the bake script, the image's name and provenance, and whether it is published.

A bake runs on a builder launched from the env's current image: bake script → scrub → probes →
snapshot. The image records only what the probes measured; it joins the family (is published)
only when every declared version was measured, unless the run was forced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from pipeline.config.model import EnvConfig
from pipeline.domain.measured import RunImage
from pipeline.domain.models import Run
from pipeline.execution import probes
from pipeline.execution.scripts import source
from providers.base import TAG_BAKE_HASH, TAG_BAKED_FROM, Script

NO_BAKE = "true"


def script(env: EnvConfig) -> Script:
    """The app's bake script, given the declared versions as BYOI_DECLARED_<KEY>."""
    variables = {f"BYOI_DECLARED_{k.upper()}": v for k, v in env.versions.items()}
    variables["BYOI_BAKE_COMMAND"] = env.bake or NO_BAKE
    variables["BYOI_APP"] = env.app
    variables["BYOI_ENV"] = env.name
    return Script("bake", source("bake"), variables, env.deploy.timeout_seconds)


def script_hash(env: EnvConfig) -> str:
    return hashlib.sha256((env.bake or "").encode()).hexdigest()[:16]


def family(env: EnvConfig) -> str | None:
    return env.image.removeprefix("family:") if env.image.startswith("family:") else None


def image_name(run: Run) -> str:
    """Unique per run and the same on every attempt, so a resumed snapshot finds its image."""
    return f"{run.app}-{run.env}-{run.created_at:%Y%m%d-%H%M%S}-r{run.id}"


def provenance(run: Run, env: EnvConfig) -> dict[str, str]:
    tags = {TAG_BAKED_FROM: run.image_id}
    if env.bake:
        tags[TAG_BAKE_HASH] = script_hash(env)
    return tags


def decide(
    measured: Mapping[str, str], declared: Mapping[str, str], *, force: bool
) -> tuple[bool, dict[str, str]]:
    """(publish?, mismatches): published when every declared version was measured, or forced."""
    missed = probes.mismatches(measured, declared)
    return (not missed or force), missed


def outcome(image: RunImage, family_name: str | None) -> str:
    """One line for the card: what was made, and why it was or was not published."""
    missed = "; ".join(f"{k} {v}" for k, v in image.mismatches.items())
    where = f"family {family_name}" if family_name else "no family (the env names an image)"
    if not image.published:
        return (
            f"image {image.image_name} kept unpublished: measured ≠ declared: {missed}. "
            "The alert stays open; `refresh --force` publishes anyway."
        )
    if image.mismatches:
        return f"image {image.image_name} published into {where} with --force despite: {missed}"
    return f"image {image.image_name} published into {where}; measured versions match"
