"""Read byoi.yml and the manifests it names into a Config.

Policy keys may be set under `defaults:`, per app, and per app environment (most specific
wins; merged in envs.py). Every problem is collected and reported as `file:line: key: message`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from pipeline.config import manifest as manifests
from pipeline.config.checks import (
    app_key_problems,
    app_name_problem,
    database,
    provider_setting_problems,
    timezone,
    used_environments,
)
from pipeline.config.envs import check_layer, parse_env
from pipeline.config.keys import APP_KEYS, POLICY_KEYS, PROVIDER_KEYS, TOP_KEYS, check_value
from pipeline.config.model import AppConfig, Config, EnvConfig, StalePolicy
from pipeline.config.yamlsrc import ConfigError, Node, Problem, load, plain


def load_config(path: Path) -> Config:
    """Read byoi.yml and every manifest it names; raises ConfigError with all problems."""
    root = load(path)
    marked: list[Problem] = []
    _placeholders(root, marked)
    problems: list[Problem] = []
    config = _parse(root, path, problems)
    # On a line still marked, the placeholder is the problem; what it breaks is no news.
    lines = {(p.file, p.line) for p in marked}
    problems = marked + [p for p in problems if (p.file, p.line) not in lines]
    if problems or config is None:
        unique = dict.fromkeys(problems)  # a flat manifest lacks a component once, not per env
        raise ConfigError(sorted(unique, key=lambda p: (p.file != str(path), p.file, p.line)))
    return config


PLACEHOLDER = "FILL-IN"
"""What `byoi init` writes where only a person can fill in the value."""


def _placeholders(node: Node, problems: list[Problem]) -> None:
    """Every value that still holds the FILL-IN placeholder, wherever it is."""
    held = node.value
    items = (
        held.items()
        if isinstance(held, dict)
        else enumerate(held)
        if isinstance(held, list)
        else ()
    )
    for key, value in items:
        if isinstance(value, Node):
            _placeholders(value, problems)
        elif isinstance(value, str) and PLACEHOLDER in value:
            problems.append(node.problem(key, "still a FILL-IN placeholder: replace it"))


def _known_keys(node: Node, allowed: Mapping[str, Any], problems: list[Problem]) -> None:
    for key in node.value:
        if key not in allowed:
            hint = ", ".join(sorted(allowed))
            problems.append(node.problem(key, f"unknown key (expected one of: {hint})"))


def _section(parent: Node, key: str, problems: list[Problem]) -> Node | None:
    value = parent.value.get(key)
    if value is None:
        return None
    if not isinstance(value, Node) or not isinstance(value.value, dict):
        problems.append(parent.problem(key, "must be a map"))
        return None
    return value


def _parse(root: Node, path: Path, problems: list[Problem]) -> Config | None:
    if not isinstance(root.value, dict):
        problems.append(root.problem(None, "byoi.yml must be a map with an `apps:` section"))
        return None
    _known_keys(root, TOP_KEYS, problems)
    groups = _groups(root, problems)
    defaults = _section(root, "defaults", problems)
    if defaults is not None:
        _known_keys(defaults, POLICY_KEYS, problems)
        check_layer(defaults, problems)
    apps_node = _section(root, "apps", problems)
    if apps_node is None:
        problems.append(root.problem("apps", "at least one app is required"))
        return None
    apps: dict[str, AppConfig] = {}
    for name in apps_node.value:
        body = _section(apps_node, name, problems)
        if body is None:
            continue
        message = app_name_problem(name)
        if message:
            problems.append(apps_node.problem(name, message))
            continue
        app = _parse_app(name, body, [n for n in (defaults,) if n], path, groups, problems)
        if app is not None:
            apps[name] = app
    stale = _stale(root, problems)
    base = path.parent.resolve()
    return Config(
        path=path,
        apps=apps,
        groups=groups,
        database=base / database(root, problems),
        timezone=timezone(root, problems),
        providers=_providers(root, base, problems),
        stale=stale,
    )


def _groups(root: Node, problems: list[Problem]) -> dict[str, tuple[str, ...]]:
    node = _section(root, "groups", problems)
    if node is None:
        return {}
    groups: dict[str, tuple[str, ...]] = {}
    for name in node.value:
        if name.startswith("@") or not re.match(r"^[a-z0-9_-]+$", name):
            problems.append(node.problem(name, "group names use a-z, 0-9, '-' and '_'"))
            continue
        members = check_value(node, name, POLICY_KEYS["approvers"], problems)
        if members is not None:
            if any(m.startswith("@") or m == "*" for m in members):
                problems.append(node.problem(name, "groups list user ids, not other groups or *"))
            groups[name] = tuple(members)
    return groups


def _stale(root: Node, problems: list[Problem]) -> StalePolicy:
    node = _section(root, "stale", problems)
    if node is None:
        return StalePolicy()
    _known_keys(
        node, {"max_age_days": 1, "schedule": 1, "interval_seconds": 1, "remind_every": 1}, problems
    )
    days = node.value.get("max_age_days", 30)
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        problems.append(node.problem("max_age_days", "must be a whole number of days, 1 or more"))
        days = 30
    schedule = str(node.value.get("schedule", StalePolicy.schedule))
    if len(schedule.split()) != 5:
        problems.append(
            node.problem("schedule", "must be a 5-field cron line like '0 9 * * mon-fri'")
        )
    else:
        try:
            CronTrigger.from_crontab(schedule)
        except ValueError as exc:
            problems.append(node.problem("schedule", f"is not a valid cron line: {exc}"))
    interval = node.value.get("interval_seconds")
    if interval is not None and (
        not isinstance(interval, int | float) or isinstance(interval, bool) or interval < 1
    ):
        problems.append(node.problem("interval_seconds", "must be a number of seconds, 1 or more"))
        interval = None
    remind = _remind_every(node, problems)
    return StalePolicy(
        max_age_days=days, schedule=schedule, interval_seconds=interval, remind_every=remind
    )


_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _remind_every(node: Node, problems: list[Problem]) -> timedelta:
    """`1d`, `12h`, `30m`, `90s` or a number of seconds."""
    value = plain(node.value.get("remind_every", "1d"))
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return timedelta(seconds=value)
    found = _DURATION.match(str(value).strip())
    if found and int(found.group(1)) * _UNIT[found.group(2)] >= 1:
        return timedelta(seconds=int(found.group(1)) * _UNIT[found.group(2)])
    problems.append(node.problem("remind_every", "must be a duration like 1d, 12h, 30m or 90s"))
    return StalePolicy.remind_every


def _providers(root: Node, base: Path, problems: list[Problem]) -> dict[str, dict[str, Any]]:
    node = _section(root, "providers", problems)
    result: dict[str, dict[str, Any]] = {"local": {"root": str(base / ".byoi" / "local")}}
    if node is None:
        return result
    for name in node.value:
        if name not in PROVIDER_KEYS:
            expected = ", ".join(PROVIDER_KEYS)
            problems.append(node.problem(name, f"unknown provider (expected {expected})"))
            continue
        section = _section(node, name, problems)
        if section is not None:
            _known_keys(section, PROVIDER_KEYS[name], problems)
            problems.extend(provider_setting_problems(section))
        settings = plain(section) if section is not None else {}
        for key in ("root", "ssh_dir"):  # directories, relative to byoi.yml
            if key in settings:
                settings[key] = str(base / str(settings[key]))
        result[name] = {**result.get(name, {}), **settings}
    return result


def _parse_app(
    name: str,
    body: Node,
    defaults: list[Node],
    config_path: Path,
    groups: Mapping[str, tuple[str, ...]],
    problems: list[Problem],
) -> AppConfig | None:
    envs_node = _section(body, "environments", problems)
    if not _app_keys_usable(body, envs_node, problems):
        return None
    manifest = _manifest(name, body, config_path, problems)
    if manifest is None:
        return None
    env_names = used_environments(manifest, envs_node, body, problems)
    environments: dict[str, EnvConfig] = {}
    for env_name in env_names:
        env_node = _section(envs_node, env_name, []) if envs_node else None
        layers = [*defaults, body, *([env_node] if env_node is not None else [])]
        env = parse_env(name, env_name, manifest, body, layers, groups, problems)
        if env is not None:
            environments[env_name] = env
    default_env = _default_env(body, env_names, problems)
    return AppConfig(name, str(body.value["manifest"]), default_env, environments)


def _app_keys_usable(body: Node, envs_node: Node | None, problems: list[Problem]) -> bool:
    """Check the app's keys and each environment's policy layer; False if the app cannot be
    read any further."""
    _known_keys(body, {**POLICY_KEYS, **APP_KEYS}, problems)
    check_layer(body, problems)
    key_problems = app_key_problems(body, envs_node)
    problems.extend(key_problems)
    for env_node in envs_node.value.values() if envs_node else ():
        if isinstance(env_node, Node) and isinstance(env_node.value, dict):
            _known_keys(env_node, POLICY_KEYS, problems)
            check_layer(env_node, problems)
    return not key_problems


def _manifest(
    name: str, body: Node, config_path: Path, problems: list[Problem]
) -> manifests.Manifest | None:
    """The Cloud 66 manifest the app's ``manifest:`` names, read for its ``component:``."""
    manifest_ref = body.value.get("manifest")
    if not isinstance(manifest_ref, str) or not manifest_ref:
        problems.append(
            body.problem(
                "manifest" if "manifest" in body.value else None,
                f"app {name}: `manifest:` must name a Cloud 66 manifest file",
            )
        )
        return None
    component = body.value.get("component")
    # Shown as a path from where byoi runs, like byoi.yml itself, so it can be opened as is.
    manifest_path = config_path.parent / manifest_ref
    try:
        return manifests.read(
            manifest_path, str(manifest_path), component if isinstance(component, str) else None
        )
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def _default_env(body: Node, env_names: list[str], problems: list[Problem]) -> str | None:
    value = body.value.get("default_env")
    if value is None:
        return env_names[0] if len(env_names) == 1 else None
    if value not in env_names:
        problems.append(
            body.problem("default_env", f"{value!r} is not one of: {', '.join(env_names)}")
        )
        return None
    return str(value)
