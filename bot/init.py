"""`byoi init`: a starter byoi.yml from a Cloud 66 manifest, with what is left marked FILL-IN.

One app per application component the manifest has (rails, rack, docker, ...), its provider from
the servers' `vendor`, its image from `cloud_image` when the manifest has one. Values byoi cannot
know (approvers, channel, target, deploy command) are placeholders that check-config rejects
until they are filled in, so a half-filled file never starts.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import manifest as manifests
from pipeline.config.loader import PLACEHOLDER, load_config
from pipeline.config.model import VENDORS
from pipeline.config.yamlsrc import ConfigError, Problem

MARK = PLACEHOLDER
DEFAULT_MANIFEST = Path(".cloud66/manifest.yml")
_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
TARGETS = {
    "aws": "the ELBv2 target group ARN new servers join",
    "gcp": "the unmanaged instance group new servers join",
    "local": "the local load balancer's name",
}


@dataclass(frozen=True)
class Found:
    """One application component of the manifest, as byoi.yml will name it."""

    name: str
    component: str
    provider: str | None
    vendor: str | None
    region: str | None
    cloud_image: str | None
    environments: tuple[str, ...]


def placeholder(what: str) -> str:
    return json.dumps(f"<{MARK}: {what}>", ensure_ascii=False)


def find(manifest: manifests.Manifest) -> list[Found]:
    envs = manifest.environment_names() or [manifests.ANY_ENVIRONMENT]
    kinds = [
        c.type
        for env in envs
        for c in manifest.components(env).values()
        if c.type in manifests.APP_TYPES
    ]
    found: list[Found] = []
    for kind in dict.fromkeys(kinds):
        components = [c for e in envs if (c := manifest.components(e).get(kind)) is not None]
        servers = [s for c in components for s in c.servers]
        vendor = next((s.vendor for s in servers if s.vendor), None)
        region = next((str(s.fields["region"]) for s in servers if s.fields.get("region")), None)
        unique = next((s.unique_name for s in servers if s.unique_name), None)
        taken = {f.name for f in found}
        name = unique if unique and _APP_NAME.match(unique) and unique not in taken else kind
        image = next((c.cloud_image for c in components if c.cloud_image), None)
        on = tuple(e for e in envs if kind in manifest.components(e))
        found.append(Found(name, kind, VENDORS.get(vendor or ""), vendor, region, image, on))
    return found


def render(found: list[Found], manifest_ref: str) -> str:
    lines = [
        "# Written by `byoi init`; see docs/configuration.md for every key.",
        f"# Replace every {MARK} value, then run `byoi check-config`.",
        "database: byoi.db",
        *_providers(found),
        "apps:",
    ]
    for app in found:
        lines += _app(app, manifest_ref)
    return "\n".join(lines) + "\n"


def _providers(found: list[Found]) -> list[str]:
    lines = ["providers:"]
    for provider in sorted({f.provider for f in found if f.provider}):
        region = next((f.region for f in found if f.provider == provider and f.region), None)
        if provider == "aws":
            lines += ["  aws:", f"    region: {region or 'us-east-1'}"]
        elif provider == "gcp":
            lines += ["  gcp:", "    # project: defaults to Application Default Credentials'"]
            lines += [f"    zone: {region or 'us-central1-a'}"]
    lines += ["  local:", "    root: local"]
    return lines


def _app(app: Found, manifest_ref: str) -> list[str]:
    envs = [e for e in app.environments if e != manifests.ANY_ENVIRONMENT]
    default = next((e for e in ("staging", "development") if e in envs), None)
    provider = app.provider or placeholder("aws, gcp or local; the manifest names no vendor")
    lines = [
        f"  {app.name}:",
        f"    manifest: {json.dumps(manifest_ref)}",
        f"    component: {app.component}",
        f"    provider: {provider}" + (f"  # from vendor: {app.vendor}" if app.provider else ""),
    ]
    if default and len(envs) > 1:
        lines.append(f"    default_env: {default}")
    if app.cloud_image:
        lines.append(f"    # image: from the manifest's cloud_image ({app.cloud_image})")
    else:
        lines.append(f"    image: {placeholder('family:<name>, or an image id or name')}")
    target = TARGETS.get(app.provider or "", "the target group, instance group or local LB")
    lines += [
        f"    target: {placeholder(target)}",
        f"    operators: [{placeholder('Slack user ids (U…), user-group ids (S…) or @groups')}]",
        f"    approvers: [{placeholder('who may approve: U…, S… or @groups')}]",
        f"    channel: {placeholder('the channel id (C…) for cards and alerts')}",
        f'    deploy_command: ""  # {MARK}: the command, run in app_dir, that installs a release',
        "    # health_command: test -s current/REVISION",
    ]
    return lines


def init(manifest_path: Path, output: Path) -> int:
    if output.exists():
        print(f"byoi: {output} already exists; not overwriting it.", file=sys.stderr)
        return 1
    try:
        manifest = manifests.read(manifest_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"byoi: cannot read {manifest_path}: {exc.strerror}", file=sys.stderr)
        return 1
    found = find(manifest)
    if not found:
        kinds = ", ".join(manifests.APP_TYPES)
        print(f"byoi: {manifest_path} has no application component ({kinds}).", file=sys.stderr)
        return 1
    reference = os.path.relpath(manifest_path.resolve(), output.resolve().parent)
    output.write_text(render(found, reference))
    print(f"wrote {output}: {len(found)} app(s): {', '.join(f.name for f in found)}")
    left(output)
    return 0


def left(path: Path) -> list[str]:
    """Print (and return) what is left: the FILL-IN lines and check-config's other problems."""
    marked = {
        number: f"{path}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if MARK in line and not line.lstrip().startswith("#")
    }
    todo = list(marked.values())
    try:
        load_config(path)
    except ConfigError as exc:
        # a problem on a FILL-IN line is that placeholder itself; the others are news
        todo += list(dict.fromkeys(str(p) for p in exc.problems if not _on(p, path, marked)))
    if todo:
        print(f"left to fill in ({len(todo)}):")
        print("\n".join(f"  {item}" for item in todo))
    else:
        print(f"{path}: ok; try `byoi shell`, then `byoi serve`.")
    return todo


def _on(problem: Problem, path: Path, lines: Mapping[int, str]) -> bool:
    return problem.file == str(path) and problem.line in lines
