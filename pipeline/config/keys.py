"""The keys byoi.yml accepts, their types and defaults, and how each value is checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipeline.config.yamlsrc import Node, Problem, plain

USER_REF = re.compile(r"^(\*|@[a-z0-9_-]+|[UWS][A-Z0-9]{2,20})$")
_PATH = re.compile(r"^/[A-Za-z0-9._/*+@-]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$")
_PROBE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,20}$")
_FORBIDDEN_SCRUB = frozenset(
    ("/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/var", "/home", "/boot")
)


@dataclass(frozen=True)
class KeySpec:
    kind: str
    default: Any
    doc: str


POLICY_KEYS: dict[str, KeySpec] = {
    "operators": KeySpec("users", ["*"], "who may request runs; `*` is anyone"),
    "approvers": KeySpec("users", [], "who may approve: user ids, user-group ids, @groups"),
    "approval_required": KeySpec("bool", True, "whether runs wait for approval"),
    "approvals": KeySpec("count", 1, "how many distinct approvers a run needs"),
    "self_approval": KeySpec("bool", False, "whether the requester may approve their own run"),
    "approval_expiry_minutes": KeySpec("count", 30, "minutes before a pending approval expires"),
    "image": KeySpec("name", None, "image id, name or family:<name>; overrides cloud_image"),
    "target": KeySpec("name", None, "target group / instance group / local LB; default app-env"),
    "min_servers": KeySpec("whole", 0, "scale-down never goes below this"),
    "max_servers": KeySpec("count", 20, "scale-up never goes above this"),
    "max_parallel": KeySpec("count", 5, "servers built at once with strategy parallel"),
    "drain_seconds": KeySpec("seconds", 30, "wait after deregistering before terminating"),
    "channel": KeySpec("channel", None, "channel id for this app's cards and alerts"),
    "app_dir": KeySpec("path", "/srv/app", "where the application lives on a server"),
    "deploy_command": KeySpec("text", "", "command run in app_dir to install the release"),
    "health_command": KeySpec("text", "", "command run in app_dir; exit 0 means healthy"),
    "release": KeySpec("name", "latest", "release passed to the deploy as BYOI_RELEASE"),
    "scrub_paths": KeySpec("paths", [], "extra paths scrub removes, besides the defaults"),
    "script_timeout_seconds": KeySpec("timeout", 600, "limit for each scrub/deploy/health run"),
    "thread_updates": KeySpec(
        "thread_updates", "phases", "phases (a reply per step, edited) or failures (only)"
    ),
    "probes": KeySpec("probes", {}, "version key → shell command printing that version"),
    "bake": KeySpec("text", "", "script a refresh runs on the builder before scrub and probes"),
}

APP_KEYS: dict[str, str] = {
    "manifest": "path of the Cloud 66 manifest, relative to byoi.yml",
    "component": "manifest component to scale (default: the first rails/rack/node/docker/...)",
    "provider": "local, aws, gcp or digitalocean (default: from the manifest's server vendor)",
    "default_env": "environment used when a command gives no --env",
    "environments": "per-environment policy keys",
}

TOP_KEYS: dict[str, str] = {
    "apps": "the applications byoi operates",
    "defaults": "policy keys applied to every app and environment",
    "groups": "named groups of user ids, referenced as @name",
    "providers": "settings per provider (local.root, aws.region, gcp.project, digitalocean.region)",
    "stale": "stale-image policy: max_age_days, schedule, remind_every",
    "database": "SQLite file for runs, servers, approvals, alerts, audit (default byoi.db)",
    "timezone": "time zone of the schedule (default UTC)",
}


def check_value(node: Node, key: str, spec: KeySpec, problems: list[Problem]) -> Any:
    """The checked value of ``node[key]``, or None (with a problem recorded) if it is wrong."""
    value = plain(node.value[key])
    if spec.kind == "paths" and isinstance(value, list):
        return _check_paths(node, key, value, problems)
    message = _check(spec.kind, value)
    if message:
        problems.append(node.problem(key, message))
        return None
    if spec.kind in ("seconds", "timeout"):
        return float(value)
    return value


def _check(kind: str, value: Any) -> str | None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "count":
        return None if is_int and value >= 1 else "must be a whole number, 1 or more"
    if kind == "whole":
        return None if is_int and value >= 0 else "must be a whole number, 0 or more"
    if kind == "seconds":
        ok = (is_int or isinstance(value, float)) and value >= 0
        return None if ok else "must be a number of seconds, 0 or more"
    if kind == "timeout":  # a script given no time at all could never succeed
        ok = (is_int or isinstance(value, float)) and value > 0
        return None if ok else "must be a number of seconds, more than 0"
    if kind == "name":
        return None if isinstance(value, str) and _NAME.match(value) else "must be a plain name"
    if kind == "text":
        return None if isinstance(value, str) else "must be a string"
    if kind == "channel":
        ok = isinstance(value, str) and _CHANNEL.match(value)
        return None if ok else "must be a channel id like C0123ABCD (not a #name)"
    if kind == "path":
        return _check_path(value)
    if kind == "thread_updates":
        return None if value in ("phases", "failures") else "must be phases or failures"
    if kind == "paths":
        if not isinstance(value, list):
            return "must be a list of absolute paths"
        return next((f"{p!r}: {m}" for p in value if (m := _check_scrub(p))), None)
    if kind == "users":
        return _check_users(value)
    if kind == "probes":
        return _check_probes(value)
    raise AssertionError(kind)


def _check_paths(node: Node, key: str, value: list[Any], problems: list[Problem]) -> Any:
    """Every bad entry is reported at its own line, not just the first."""
    items = node.value[key]
    bad = [(i, p, m) for i, p in enumerate(value) if (m := _check_scrub(p))]
    for index, path, message in bad:
        line = items.line_of(index) if isinstance(items, Node) else node.line_of(key)
        problems.append(Problem(node.file, line, node.child_path(key), f"{path!r}: {message}"))
    return None if bad else value


def _check_path(value: Any) -> str | None:
    if not isinstance(value, str) or not _PATH.match(value) or ".." in value.split("/"):
        return "must be an absolute path of plain characters, without '..'"
    return None


def _check_scrub(value: Any) -> str | None:
    problem = _check_path(value)
    if problem:
        return problem
    if str(value).rstrip("/") in _FORBIDDEN_SCRUB or str(value).rstrip("/") == "":
        return "is too broad to scrub"
    return None


def _check_users(value: Any) -> str | None:
    if not isinstance(value, list):
        return "must be a list of user ids (U…/W…), user-group ids (S…) or @groups"
    for ref in value:
        if not isinstance(ref, str) or not USER_REF.match(ref):
            return (
                f"{ref!r} is not a user id (U…/W…), user-group id (S…), @group or *; "
                "use ids, never display names"
            )
    return None


def _check_probes(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be a map of version key to shell command"
    for key, command in value.items():
        if not isinstance(key, str) or not _PROBE_KEY.match(key):
            return f"{key!r} is not a version key (a-z, 0-9 and '_', like ruby_version)"
        if not isinstance(command, str) or not command.strip():
            return f"{key}: the probe must be a non-empty shell command"
    return None


PROVIDER_KEYS: dict[str, dict[str, str]] = {
    "local": {"root": "directory of images/, servers/ and targets/ (default .byoi/local)"},
    "aws": {
        "region": "AWS region (default: boto3's chain, e.g. AWS_REGION)",
        "profile": "named profile from the shared AWS config (default: boto3's chain)",
        "endpoint_url": "API endpoint override (AWS_ENDPOINT_URL works too)",
        "security_group_ids": "security groups for new instances",
        "iam_instance_profile": "instance profile name; it must allow SSM",
        "key_name": "EC2 key pair for new instances (optional; SSM needs none)",
        "instance_type": "instance type when the manifest gives no size (default t3.micro)",
        "poll_seconds": "delay between state checks (default 5)",
        "wait_seconds": "longest wait for a state: running, healthy, image available (default 600)",
        "max_attempts": "botocore standard-mode retries after a call's first request (default 5)",
        "connect_timeout": "seconds to open a connection to an AWS API (default 5)",
        "read_timeout": "seconds to wait for an AWS API to answer (default 20)",
    },
    "gcp": {
        "project": "GCP project id (default: from Application Default Credentials)",
        "zone": "zone of new instances when the manifest gives none (default us-central1-a)",
        "api_endpoint": "Compute API endpoint override, for emulators (or BYOI_GCP_API_ENDPOINT)",
        "credentials": "`anonymous` for emulators; otherwise Application Default Credentials",
        "network": "network of new instances (default global/networks/default)",
        "subnetwork": "subnetwork when the manifest gives none",
        "machine_type": "machine type when the manifest gives no size (default e2-small)",
        "service_account": "service account e-mail of new instances",
        "instance_group_zone": "zone of the unmanaged instance groups (default: the server's)",
        "poll_seconds": "delay between state checks (default 5)",
        "wait_seconds": "longest wait for an operation, RUNNING or a step report (default 600)",
        "read_timeout": "seconds to wait for a Compute API call to answer (default 20)",
    },
    "digitalocean": {
        "region": "region of new droplets when the manifest gives none (e.g. ams3)",
        "size": "droplet size when the manifest gives none (default s-1vcpu-1gb)",
        "vpc_uuid": "VPC of new droplets when the manifest gives no subnet_id",
        "api_endpoint": "API endpoint override, for emulators (default DigitalOcean's own)",
        "ssh_dir": "byoi's SSH key pair and pinned host keys (default: beside the database)",
        "ssh_user": "user byoi logs in as on droplets (default root)",
        "ssh_port": "SSH port of droplets (default 22)",
        "ssh_network": "address byoi connects to: public or private (default public)",
        "ssh_wait_seconds": "how long byoi retries connecting while sshd starts (default 300)",
        "poll_seconds": "delay between state checks (default 5)",
        "wait_seconds": "longest wait for active, an action, or the load balancer (default 600)",
        "max_attempts": "tries per API call on 429, 5xx and dropped connections (default 5)",
        "read_timeout": "seconds to wait for an API call to answer (default 60)",
    },
}
