"""Checks of byoi.yml values beyond their type: names, the time zone, the database path, and
which environments of a manifest byoi uses."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.config import manifest as manifests
from pipeline.config.keys import PROVIDER_KEYS
from pipeline.config.yamlsrc import Node, Problem, plain

MAX_APP_NAME = 31
"""Longest app name: it goes into server names, tags and labels with room for run and slot."""
_APP_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_APP_TYPES = ", ".join(manifests.APP_TYPES)


def app_name_problem(name: str) -> str | None:
    if not _APP_NAME.match(name):
        return "app names use a-z, 0-9 and '-', and start with a letter"
    if len(name) > MAX_APP_NAME:
        return f"app names are at most {MAX_APP_NAME} characters (this one has {len(name)})"
    return None


def database(root: Node, problems: list[Problem]) -> str:
    value = root.value.get("database", "byoi.db")
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        problems.append(root.problem("database", "must be the path of a SQLite file"))
        return "byoi.db"
    return value


def timezone(root: Node, problems: list[Problem]) -> str:
    value = root.value.get("timezone", "UTC")
    if isinstance(value, str) and _is_zone(value):
        return value
    problems.append(
        root.problem(
            "timezone",
            f"{shown_value(value)} is not a time zone; use a name like UTC or Europe/London",
        )
    )
    return "UTC"


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def shown_value(value: Any) -> str:
    text = repr(plain(value))
    return text if len(text) <= 60 else text[:59] + "…"


def used_environments(
    manifest: manifests.Manifest, envs_node: Node | None, body: Node, problems: list[Problem]
) -> list[str]:
    """The environments byoi uses: those byoi.yml names, and every other that can be scaled."""
    configured = list(envs_node.value) if envs_node else []
    if not manifest.has_environments:
        return configured or ["default"]
    names = manifest.environment_names()
    for env in configured:
        if envs_node is not None and env not in names and env not in manifest.templates:
            problems.append(
                envs_node.problem(
                    env, f"the manifest has no environment {env!r} (it has: {', '.join(names)})"
                )
            )
    default = body.value.get("default_env")
    named = {*configured, *([default] if isinstance(default, str) else [])}
    wanted = body.value.get("component")
    used = [n for n in names if n in named or manifest.app_component(n, wanted) is not None] + [
        t for t in configured if t in manifest.templates
    ]
    if not used:
        what = f"a {wanted!r} component" if wanted else f"an application component ({_APP_TYPES})"
        problems.append(
            Problem(
                manifest.file, 1, "", f"no environment has {what}, so byoi has nothing to scale"
            )
        )
    return used


def missing_component(manifest: manifests.Manifest, env_name: str, wanted: Any) -> Problem:
    """Said at the manifest's line for the environment, where the fix goes."""
    what = f"no {wanted!r} component" if wanted else f"no application component ({_APP_TYPES})"
    if not manifest.has_environments:
        return Problem(manifest.file, 1, "", f"has {what}")
    has = ", ".join(manifest.components(env_name))
    return Problem(
        manifest.file,
        manifest.line_of(env_name),
        env_name,
        f"has {what}, only {has}, and byoi.yml uses this environment"
        if has
        else f"has {what} (it is empty), and byoi.yml uses this environment",
    )


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def app_key_problems(body: Node, environments: Node | None) -> list[Problem]:
    """App keys whose wrong type would otherwise surface later, or not at all."""
    found = []
    for key, what in (
        ("component", "a component type, like rails"),
        ("default_env", "an environment name"),
    ):
        value = body.value.get(key)
        if value is not None and not (isinstance(value, str) and _NAME.match(value)):
            found.append(body.problem(key, f"must be {what}, not {shown_value(value)}"))
    provider = body.value.get("provider")
    if provider is not None and not (isinstance(provider, str) and provider in PROVIDER_KEYS):
        names = ", ".join(list(PROVIDER_KEYS)[:-1]) + " or " + list(PROVIDER_KEYS)[-1]
        found.append(body.problem("provider", f"must be {names}, not {shown_value(provider)}"))
    if environments is not None:
        for name, env in environments.value.items():
            if env is not None and not (isinstance(env, Node) and isinstance(env.value, dict)):
                message = "must be a map of policy keys, like {approvals: 2}"
                found.append(environments.problem(name, message))
    return found


def provider_setting_problems(section: Node) -> list[Problem]:
    """Each provider setting has the type its adapter reads, or is reported here."""
    found = []
    for key, value in section.value.items():
        if key.endswith(("_seconds", "_timeout")):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            what = "a number of seconds, more than 0"
        elif key == "max_attempts":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            what = "a whole number, 1 or more"
        elif key == "ssh_port":
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
            what = "a port number, 1 to 65535"
        elif key == "ssh_network":
            ok = value in ("public", "private")
            what = "public or private"
        elif key == "security_group_ids":
            ok = isinstance(value, Node) and all(isinstance(v, str) and v for v in value.value)
            ok = ok and isinstance(value.value, list)
            what = "a list of security group ids"
        else:
            ok = isinstance(value, str) and bool(value.strip())
            what = "a string"
        if not ok:
            found.append(section.problem(key, f"must be {what}, not {shown_value(value)}"))
    return found
