"""Cloud 66 manifests (`.cloud66/manifest.yml`): components, their versions and server specs.

A manifest has an optional environment level, then components by type (`rails`, `docker`, ...),
each with `configuration:` and either `server:` (one map, `external`, or the unique name of
another server) or `servers:` (a list of `- server:` maps, which may say
`same_as: <unique_name>`). Unknown keys are kept. Only the application components byoi scales
are held to its rules; databases and other components are read as far as they make sense.
Top-level keys that only hold YAML anchors for others to merge are templates, not environments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config.yamlsrc import ConfigError, Node, Problem, load, plain

ANY_ENVIRONMENT = "*"
APP_TYPES = ("rails", "rack", "node", "docker", "sinatra", "padrino")
KNOWN_TYPES = frozenset(
    (
        *APP_TYPES,
        "gateway",
        "load_balancer",
        "mysql",
        "postgresql",
        "postgis",
        "redis",
        "mongodb",
        "elasticsearch",
        "rabbitmq",
        "memcached",
        "glusterfs",
        "sphinx",
    )
)
_COMPONENT_KEYS = frozenset(("configuration", "server", "servers"))
STANDARD_ENVIRONMENTS = frozenset(("production", "staging", "development", "qa", "test"))
EXTERNAL = "external"
_SPEC_KEYS = {
    "size": "size",
    "region": "region",
    "availability_zone": "zone",
    "subnet_id": "subnet",
    "root_disk_size": "root_disk_gb",
}


@dataclass(frozen=True)
class ServerEntry:
    unique_name: str | None
    vendor: str | None
    fields: Mapping[str, Any]
    """Every key of the `server:` map (after `same_as`), as written."""
    line: int
    path: str


@dataclass(frozen=True)
class Component:
    type: str
    configuration: Mapping[str, Any]
    servers: tuple[ServerEntry, ...]
    file: str
    line: int

    @property
    def cloud_image(self) -> str | None:
        value = self.configuration.get("cloud_image")
        return str(value) if value not in (None, "") else None

    @property
    def versions(self) -> dict[str, str]:
        """Declared versions: `*_version`, `operating_system`, and a bare `version`."""
        found: dict[str, str] = {}
        for key, value in self.configuration.items():
            if value in (None, ""):
                continue
            if key.endswith("_version") or key == "operating_system":
                found[key] = str(value)
            elif key == "version":
                found[f"{self.type}_version"] = str(value)
        return found


@dataclass(frozen=True)
class Manifest:
    file: str
    environments: Mapping[str, Mapping[str, Component]] = field(default_factory=dict)
    lines: Mapping[str, int] = field(default_factory=dict)
    """Line of each environment (and template) in the file."""
    templates: frozenset[str] = frozenset()
    """Anchored top-level keys merged into environments: usable if named, never listed."""

    @property
    def has_environments(self) -> bool:
        return ANY_ENVIRONMENT not in self.environments

    def environment_names(self) -> list[str]:
        if not self.has_environments:
            return []
        return [name for name in self.environments if name not in self.templates]

    def line_of(self, environment: str) -> int:
        return self.lines.get(environment, 1)

    def components(self, environment: str) -> Mapping[str, Component]:
        if not self.has_environments:
            return self.environments[ANY_ENVIRONMENT]
        return self.environments.get(environment, {})

    def app_component(self, environment: str, wanted: str | None = None) -> Component | None:
        """The component byoi scales: `wanted`, else the first application type."""
        components = self.components(environment)
        if wanted:
            return components.get(wanted)
        for component in components.values():
            if component.type in APP_TYPES:
                return component
        return None


def is_version_key(key: str) -> bool:
    """Keys whose numbers are versions, kept as written: `2.10` is not `2.1`."""
    return key.endswith("_version") or key in ("version", "operating_system")


def read(path: Path, display: str | None = None, component: str | None = None) -> Manifest:
    """Parse a manifest file; raises ConfigError listing every problem.

    ``component`` is the one byoi scales when byoi.yml names it; it is held to the rules of
    an application component even if its type is not one."""
    root = load(path, display, keep_text=is_version_key)
    problems: list[Problem] = []
    manifest = _parse_root(root, _Rules(component), problems)
    if problems:
        raise ConfigError(sorted(dict.fromkeys(problems), key=lambda p: p.line))
    return manifest


@dataclass(frozen=True)
class _Rules:
    component: str | None

    def strict(self, kind: str) -> bool:
        return kind in APP_TYPES or kind == self.component


def _is_component(key: str, value: Any) -> bool:
    if isinstance(value, Node) and isinstance(value.value, dict):
        if _COMPONENT_KEYS & set(value.value):
            return True
    return key in KNOWN_TYPES


def _holds_components(value: Any) -> bool:
    return (
        isinstance(value, Node)
        and isinstance(value.value, dict)
        and any(_is_component(k, v) for k, v in value.value.items())
    )


def _templates(root: Node) -> frozenset[str]:
    """Anchored top-level keys that are not environments of their own.

    `default: &default {...}` merged into `production:` is a template; `staging: &staging`
    merged into `production:` is still an environment (Cloud 66 knows that name), and so is
    an anchored key that nothing refers to but that holds components."""
    found = set()
    for key, anchor in root.anchors.items():
        shaped = _holds_components(root.value[key])
        if not shaped or (anchor in root.aliased and key not in STANDARD_ENVIRONMENTS):
            found.add(key)
    return frozenset(found)


def _parse_root(root: Node, rules: _Rules, problems: list[Problem]) -> Manifest:
    if not isinstance(root.value, dict) or not root.value:
        problems.append(
            root.problem(None, "a manifest must be a map of environments or components")
        )
        return Manifest(root.file)
    templates = _templates(root)
    entries = {k: v for k, v in root.value.items() if k not in templates}
    if entries and all(_is_component(k, v) for k, v in entries.items()):
        components = _parse_components(root, entries, rules, problems)
        return Manifest(root.file, {ANY_ENVIRONMENT: components}, {ANY_ENVIRONMENT: root.line})
    environments: dict[str, Mapping[str, Component]] = {}
    for name, env in root.value.items():
        if name in templates:
            if _holds_components(env):
                environments[name] = _parse_components(env, env.value, rules, [])
        elif _is_component(name, env):
            problems.append(
                root.problem(name, "components and environments are mixed at the top level")
            )
        elif not isinstance(env, Node) or not isinstance(env.value, dict):
            problems.append(root.problem(name, "an environment must be a map of components"))
        else:
            environments[name] = _parse_components(env, env.value, rules, problems)
    return Manifest(root.file, environments, dict(root.lines), templates)


def _parse_components(
    env: Node, entries: Mapping[str, Any], rules: _Rules, problems: list[Problem]
) -> dict[str, Component]:
    components: dict[str, Component] = {}
    for kind, body in entries.items():
        strict = rules.strict(kind)
        if not isinstance(body, Node) or not isinstance(body.value, dict):
            if strict:
                problems.append(env.problem(kind, "a component must be a map"))
                continue
            body = Node({}, env.file, env.line_of(kind), env.child_path(kind))
        components[kind] = _parse_component(kind, body, problems if strict else [])
    _resolve_same_as(env, components, rules, problems)
    return components


def _parse_component(kind: str, body: Node, problems: list[Problem]) -> Component:
    configuration: dict[str, Any] = {}
    conf = body.value.get("configuration")
    if isinstance(conf, Node) and isinstance(conf.value, dict):
        configuration = plain(conf)
        image = configuration.get("cloud_image")
        if image is not None and not isinstance(image, str):
            problems.append(
                conf.problem("cloud_image", "must be an image id, name or family:<name>")
            )
    elif conf is not None:
        problems.append(body.problem("configuration", "must be a map"))
    servers = _parse_servers(body, problems)
    return Component(kind, configuration, tuple(servers), body.file, body.line)


def _parse_servers(body: Node, problems: list[Problem]) -> list[ServerEntry]:
    found: list[ServerEntry] = []
    single = body.value.get("server")
    if single is not None:
        entry = _parse_server(body, "server", single, problems)
        if entry:
            found.append(entry)
    many = body.value.get("servers")
    if many is None:
        return found
    if not isinstance(many, Node) or not isinstance(many.value, list):
        problems.append(body.problem("servers", "must be a list of `- server:` entries"))
        return found
    for index, item in enumerate(many.value):
        if (
            not isinstance(item, Node)
            or not isinstance(item.value, dict)
            or "server" not in item.value
        ):
            problems.append(many.problem(index, "each entry must be `- server: {...}`"))
            continue
        entry = _parse_server(item, "server", item.value["server"], problems)
        if entry:
            found.append(entry)
    return found


def _parse_server(parent: Node, key: str, node: Any, problems: list[Problem]) -> ServerEntry | None:
    if isinstance(node, str) and node:
        if node == EXTERNAL:
            return None  # a server byoi neither builds nor reads: `mysql: {server: external}`
        # `server: app1` names another server, as `same_as: app1` does
        return ServerEntry(
            None, None, {"same_as": node}, parent.line_of(key), parent.child_path(key)
        )
    if not isinstance(node, Node) or not isinstance(node.value, dict):
        problems.append(
            parent.problem(
                key, "must be a map of server fields, `external`, or the name of another server"
            )
        )
        return None
    fields = plain(node)
    disk = fields.get("root_disk_size")
    if disk is not None and (not isinstance(disk, int) or isinstance(disk, bool) or disk <= 0):
        problems.append(
            node.problem("root_disk_size", f"must be a whole number of GB, not {disk!r}")
        )
    name = fields.get("unique_name")
    vendor = fields.get("vendor")
    return ServerEntry(
        unique_name=str(name) if name is not None else None,
        vendor=str(vendor) if vendor is not None else None,
        fields=fields,
        line=node.line,
        path=node.path,
    )


def _resolve_same_as(
    env: Node, components: dict[str, Component], rules: _Rules, problems: list[Problem]
) -> None:
    """Replace `same_as: <name>` entries by the fields of the server they name."""
    named = {
        s.unique_name: s
        for c in components.values()
        for s in c.servers
        if s.unique_name and "same_as" not in s.fields
    }
    for kind, component in list(components.items()):
        resolved = []
        for server in component.servers:
            other = server.fields.get("same_as")
            if other is None:
                resolved.append(server)
                continue
            if not isinstance(other, str) or other not in named:
                if isinstance(other, str) and not rules.strict(kind):
                    continue  # a database on a server byoi does not know is not byoi's concern
                known = ", ".join(sorted(named)) or "none"
                problems.append(
                    Problem(
                        env.file,
                        server.line,
                        f"{server.path}.same_as",
                        f"no server named {other!r} (servers here: {known})",
                    )
                )
                continue
            target = named[other]
            resolved.append(
                ServerEntry(
                    target.unique_name, target.vendor, target.fields, server.line, server.path
                )
            )
        components[kind] = Component(
            component.type, component.configuration, tuple(resolved), component.file, component.line
        )


def spec_fields(server: ServerEntry) -> tuple[dict[str, Any], dict[str, str]]:
    """Split a server's fields into ServerSpec keyword arguments and the rest."""
    known: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, value in server.fields.items():
        if key in _SPEC_KEYS:
            known[_SPEC_KEYS[key]] = value if key == "root_disk_size" else str(value)
        elif key not in ("unique_name", "vendor", "same_as"):
            extra[key] = str(value)
    return known, extra
