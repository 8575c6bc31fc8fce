"""`byoi image import DIR --app A [--env E] [--family F]`: a directory becomes a local image.

Its versions are measured by probes run on a throwaway server cloned from it, never typed in.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bot.wiring import App
from pipeline.config.model import Config, EnvConfig
from pipeline.errors import Inconsistency, UserError
from pipeline.execution.measure import measure_image
from pipeline.execution.probes import UNKNOWN
from providers.base import TAG_APP, TAG_ENV, Image, ImageState, ProviderError
from providers.local import LocalProvider


def env_for(config: Config, app_name: str, env_name: str | None) -> EnvConfig:
    """The local environment to import for; raises UserError saying why there is none."""
    app = config.apps.get(app_name)
    if app is None:
        known = ", ".join(sorted(config.apps)) or "none"
        raise UserError(f"unknown app {app_name!r} (apps: {known})")
    name = env_name or app.default_env
    if name is None and len(app.environments) == 1:
        name = next(iter(app.environments))
    if name is None or name not in app.environments:
        raise UserError(f"give --env, one of: {', '.join(app.environments)}")
    env = app.environments[name]
    if env.provider != "local":
        raise UserError(
            f"{app_name}/{name} runs on {env.provider}; image import is for the local provider "
            "(on a cloud, bake an image with `refresh`)"
        )
    return env


def import_directory(app: App, directory: Path, env: EnvConfig, family: str | None) -> int:
    """Import ``directory`` as an image, measure its versions and say them; an exit code."""
    provider = app.providers("local")
    if not isinstance(provider, LocalProvider):
        raise Inconsistency(f"the local provider is a {type(provider).__name__}")
    family = family or _family_of(env)
    name = f"{env.app}-{env.name}-import-{app.clock().strftime('%Y%m%d-%H%M%S')}"
    try:
        image = provider.import_tree(directory, name, family=family, state=ImageState.PENDING)
    except ProviderError as exc:
        print(f"byoi: {exc.reason}", file=sys.stderr)
        return 1
    keys = {*env.versions, "operating_system"}
    try:
        versions = _measure(provider, image, env, keys)
    except ProviderError as exc:
        provider.set_image_state(image.id, ImageState.FAILED)
        print(f"byoi: measuring {image.name} failed: {exc.reason}", file=sys.stderr)
        return 1
    provider.record_versions(image.id, versions)
    provider.set_image_state(image.id, ImageState.READY)
    print(_imported(image, family, env, keys, versions))
    return 0


def _family_of(env: EnvConfig) -> str | None:
    """The family the environment's image comes from, if it names one."""
    return env.image.removeprefix("family:") if env.image.startswith("family:") else None


def _measure(
    provider: LocalProvider, image: Image, env: EnvConfig, keys: set[str]
) -> dict[str, str]:
    """The image's versions, measured by probes on a throwaway server cloned from it."""
    return measure_image(
        provider,
        image,
        keys,
        key=f"byoi-probe-{image.id.removeprefix('img-')}",
        tags={TAG_APP: env.app, TAG_ENV: env.name},
        overrides=env.probes,
        timeout_seconds=env.deploy.timeout_seconds,
    )


def _imported(
    image: Image, family: str | None, env: EnvConfig, keys: set[str], versions: dict[str, str]
) -> str:
    """The new image and each measured version, with the manifest's where they differ."""
    lines = [f"image {image.name} ({image.id})" + (f" in family {family}" if family else "")]
    for key in sorted(keys | set(versions)):
        measured = versions.get(key, UNKNOWN)
        declared = env.versions.get(key)
        drift = f" (the manifest declares {declared})" if declared and declared != measured else ""
        lines.append(f"  {key}: {measured}{drift}")
    return "\n".join(lines)
