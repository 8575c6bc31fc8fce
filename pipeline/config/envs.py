"""One app environment of byoi.yml: its policy merged from the layers that set it (defaults, the
app, the app environment; most specific wins), checked, and joined with its manifest component."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.config import manifest as manifests
from pipeline.config.checks import missing_component
from pipeline.config.keys import POLICY_KEYS, PROVIDER_KEYS, check_value
from pipeline.config.model import (
    APP_SCRUB_DIRS,
    DEFAULT_SCRUB_PATHS,
    VENDORS,
    ApprovalPolicy,
    DeployConfig,
    EnvConfig,
    ThreadUpdates,
)
from pipeline.config.yamlsrc import Node, Problem
from providers.base import ServerSpec

Policy = dict[str, Any]


def check_layer(node: Node, problems: list[Problem]) -> None:
    """Check every policy key written in one layer (defaults, an app, an app environment)."""
    for key, spec in POLICY_KEYS.items():
        if key in node.value:
            check_value(node, key, spec, problems)


def merged_policy(nodes: list[Node]) -> Policy:
    """Merge policy keys from general to specific; wrong values were reported by check_layer."""
    merged: Policy = {name: spec.default for name, spec in POLICY_KEYS.items()}
    ignored: list[Problem] = []
    for node in nodes:
        for key, spec in POLICY_KEYS.items():
            if key in node.value:
                value = check_value(node, key, spec, ignored)
                if value is not None:
                    merged[key] = value
    return merged


def parse_env(
    app: str,
    env_name: str,
    manifest: manifests.Manifest,
    body: Node,
    layers: list[Node],
    groups: Mapping[str, tuple[str, ...]],
    problems: list[Problem],
) -> EnvConfig | None:
    """``env_name`` of ``app`` (its byoi.yml ``body``), or None when it cannot be used."""
    policy = merged_policy(layers)
    where = layers[-1]
    component = manifest.app_component(env_name, body.value.get("component"))
    if component is None:
        problems.append(missing_component(manifest, env_name, body.value.get("component")))
        return None
    server = component.servers[0] if component.servers else None
    provider = _provider(f"{app}/{env_name}", body, server, problems)
    if provider is None:
        return None
    image = policy["image"] or component.cloud_image
    if not image:
        problems.append(
            where.problem(
                None,
                f"{app}/{env_name}: no image; set cloud_image in "
                f"{manifest.file} or image: in byoi.yml",
            )
        )
        return None
    _policy_problems(f"{app}/{env_name}", where, policy, layers, groups, problems)
    return _env_config(app, env_name, provider, str(image), component, policy)


def _env_config(
    app: str,
    env_name: str,
    provider: str,
    image: str,
    component: manifests.Component,
    policy: Policy,
) -> EnvConfig:
    server = component.servers[0] if component.servers else None
    known, extra = manifests.spec_fields(server) if server else ({}, {})
    return EnvConfig(
        app=app,
        name=env_name,
        provider=provider,
        image=image,
        target=policy["target"] or f"{app}-{env_name}",
        spec=ServerSpec(**known, extra=extra),
        versions=component.versions,
        operators=tuple(policy["operators"]),
        approval=_approval(policy),
        deploy=_deploy(policy),
        min_servers=policy["min_servers"],
        max_servers=policy["max_servers"],
        max_parallel=policy["max_parallel"],
        drain_seconds=policy["drain_seconds"],
        channel=policy["channel"],
        component=component.type,
        thread_updates=ThreadUpdates(policy["thread_updates"]),
        probes=dict(policy["probes"]),
        bake=policy["bake"],
    )


def _provider(
    where: str, body: Node, server: manifests.ServerEntry | None, problems: list[Problem]
) -> str | None:
    """The app's ``provider:``, else the one the manifest's server vendor names."""
    provider = body.value.get("provider") or (VENDORS.get(server.vendor or "") if server else None)
    if provider in PROVIDER_KEYS:
        return str(provider)
    vendor = server.vendor if server else None
    problems.append(
        body.problem(
            "provider" if "provider" in body.value else None,
            f"{where}: no provider (manifest vendor "
            f"{vendor!r}); set provider: local, aws, gcp or digitalocean",
        )
    )
    return None


def _policy_problems(
    env: str,
    where: Node,
    policy: Policy,
    layers: list[Node],
    groups: Mapping[str, tuple[str, ...]],
    problems: list[Problem],
) -> None:
    """What is wrong with the merged policy as a whole (each value alone was checked)."""
    _check_refs(where, policy, groups, problems)
    approvers_written = any("approvers" in n.value for n in layers)
    if policy["approval_required"] and not policy["approvers"] and not approvers_written:
        problems.append(
            where.problem(
                None,
                f"{env}: approval is required but no approvers are named (set approvers:)",
            )
        )
    _unreachable_approvals(env, where, policy, groups, problems)
    if policy["min_servers"] > policy["max_servers"]:
        bounds = f"min_servers {policy['min_servers']} is above max_servers {policy['max_servers']}"
        problems.append(where.problem(None, f"{env}: {bounds}"))
    if not policy["deploy_command"]:
        problems.append(
            where.problem(
                None,
                f"{env}: deploy_command is required (the command that installs the release)",
            )
        )


def _unreachable_approvals(
    env: str,
    where: Node,
    policy: Policy,
    groups: Mapping[str, tuple[str, ...]],
    problems: list[Problem],
) -> None:
    """More approvals than the named approvers could ever give. Only when every approver is a
    user id (or a group of byoi.yml): a chat user group's size is known only at run time."""
    if not policy["approval_required"]:
        return
    people: set[str] = set()
    for ref in policy["approvers"]:
        members = groups.get(ref[1:], ()) if ref.startswith("@") else (ref,)
        if not all(m[:1] in ("U", "W") for m in members):
            return
        people.update(members)
    if people and policy["approvals"] > len(people):
        problems.append(
            where.problem(
                None,
                f"{env}: approvals is {policy['approvals']} but only {len(people)} approver(s) "
                f"are named ({', '.join(sorted(people))}), so no run could ever be approved; "
                "lower approvals or name more approvers",
            )
        )


def _check_refs(
    where: Node,
    policy: Policy,
    groups: Mapping[str, tuple[str, ...]],
    problems: list[Problem],
) -> None:
    for key in ("operators", "approvers"):
        for ref in policy[key]:
            if ref.startswith("@") and ref[1:] not in groups:
                problems.append(
                    where.problem(None, f"{key}: group {ref} is not defined under groups:")
                )


def _approval(policy: Policy) -> ApprovalPolicy:
    return ApprovalPolicy(
        required=policy["approval_required"],
        approvers=tuple(policy["approvers"]),
        approvals=policy["approvals"],
        self_approval=policy["self_approval"],
        expiry_minutes=policy["approval_expiry_minutes"],
    )


def _deploy(policy: Policy) -> DeployConfig:
    app_dir = policy["app_dir"]
    return DeployConfig(
        app_dir=app_dir,
        command=policy["deploy_command"],
        health_command=policy["health_command"],
        release=policy["release"],
        scrub_paths=(
            *DEFAULT_SCRUB_PATHS,
            *(f"{app_dir.rstrip('/')}/{d}" for d in APP_SCRUB_DIRS),
            *policy["scrub_paths"],
        ),
        timeout_seconds=policy["script_timeout_seconds"],
    )
