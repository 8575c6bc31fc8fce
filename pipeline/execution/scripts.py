"""The scrub, deploy and health scripts, and the environment each one is given.

User text never becomes shell code: every parameter travels as an environment variable.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from pipeline.config.model import DeployConfig
from pipeline.domain.models import Run
from providers.base import Script

__all__ = ["Script", "deploy", "health", "scrub", "source"]


@cache
def source(name: str) -> str:
    return resources.files("pipeline.execution").joinpath("sh", f"{name}.sh").read_text()


def scrub(deploy: DeployConfig) -> Script:
    return Script(
        "scrub",
        source("scrub"),
        {"BYOI_SCRUB_PATHS": "\n".join(deploy.scrub_paths)},
        deploy.timeout_seconds,
    )


def deploy(config: DeployConfig, run: Run, server_key: str) -> Script:
    return Script(
        "deploy",
        source("deploy"),
        {**_identity(config, run, server_key), "BYOI_DEPLOY_COMMAND": config.command},
        config.timeout_seconds,
    )


def health(config: DeployConfig, run: Run, server_key: str) -> Script:
    return Script(
        "health",
        source("health"),
        {**_identity(config, run, server_key), "BYOI_HEALTH_COMMAND": config.health_command},
        config.timeout_seconds,
    )


def _identity(config: DeployConfig, run: Run, server_key: str) -> dict[str, str]:
    """What deploy and health commands know of the server and its run."""
    return {
        "BYOI_APP": run.app,
        "BYOI_ENV": run.env,
        "BYOI_RUN": str(run.id),
        "BYOI_RELEASE": config.release,
        "BYOI_SERVER": server_key,
        "BYOI_APP_DIR": config.app_dir,
    }
