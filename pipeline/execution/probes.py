"""Version probes: a shell command per version key, run on a server, whose output is the version.

What byoi records as a server's or an image's versions is what these printed, never what a
manifest declares. A probe that fails or prints nothing records ``unknown``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pipeline.execution.scripts import source
from providers.base import Provider, Script, ScriptResult, Server

UNKNOWN = "unknown"
KEY = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
# ${BYOI_ROOT:-} is empty on a real server and the server's directory on the local provider.
DEFAULT_PROBES: dict[str, str] = {
    "ruby_version": "ruby -v",
    "node_version": "node --version",
    "python_version": "python3 --version",
    "passenger_version": "passenger --version",
    "nginx_version": "nginx -v 2>&1",
    "docker_version": "docker --version",
    "postgresql_version": "psql --version",
    "mysql_version": "mysql --version",
    "redis_version": "redis-server --version",
    "operating_system": "grep -E '^(ID|VERSION_ID)=' \"${BYOI_ROOT:-}/etc/os-release\"",
}
_VERSION = re.compile(r"(?<![\w.])v?(\d+(?:\.\d+)+(?:-[0-9A-Za-z]+)?)")
_NUMBER = re.compile(r"(?<![\w.])v?(\d+)(?![\w.])")
_LINE = "byoi-probe"
_SEPARATOR = "\x1f"  # the probe script joins a probe's output lines with US


def probes_for(keys: Iterable[str], overrides: Mapping[str, str]) -> dict[str, str]:
    """The probe of every key asked for (declared or configured); keys without one are left out."""
    merged = {**DEFAULT_PROBES, **overrides}
    wanted = sorted({*keys, *overrides})
    return {k: merged[k] for k in wanted if k in merged}


def script(probes: Mapping[str, str], timeout_seconds: float) -> Script:
    """One script that runs every probe; each command travels in its own variable."""
    env = {"BYOI_PROBE_KEYS": " ".join(sorted(probes))}
    env.update({f"BYOI_PROBE_{k.upper()}": command for k, command in probes.items()})
    return Script("probe", source("probe"), env, timeout_seconds)


def measure(
    provider: Provider,
    server: Server,
    keys: Iterable[str],
    overrides: Mapping[str, str],
    timeout_seconds: float,
) -> dict[str, str]:
    """Run the probes of ``keys`` (and every configured one) on ``server`` through the
    provider's script channel; every key gets what its probe printed, or ``unknown``."""
    result = provider.run_script(server, script(probes_for(keys, overrides), timeout_seconds))
    return versions(keys, overrides, result)


def versions(
    keys: Iterable[str], overrides: Mapping[str, str], result: ScriptResult
) -> dict[str, str]:
    """What the probe script's ``result`` says of ``keys`` (and every configured probe)."""
    return read(keys_of(keys, overrides), result.output if result.ok else "")


def keys_of(keys: Iterable[str], overrides: Mapping[str, str]) -> list[str]:
    """Every key a probe answers for: those asked for and every configured probe's, sorted."""
    keys = list(keys)
    return sorted({*keys, *probes_for(keys, overrides)})


def read(keys: Iterable[str], output: str) -> dict[str, str]:
    """Versions from the probe script's output; every key asked for gets a value."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 3 or parts[0] != _LINE:
            continue
        key, code = parts[1], parts[2]
        text = parts[3].replace(_SEPARATOR, "\n") if len(parts) == 4 else ""
        found[key] = parse(key, text) if code == "0" else UNKNOWN
    return {k: found.get(k, UNKNOWN) for k in sorted(set(keys))}


def parse(key: str, output: str) -> str:
    """The version in a probe's output: `ruby 3.2.2p53 (...)` → `3.2.2`, os-release → ubuntu2204."""
    if key == "operating_system":
        return os_release(output)
    text = output.strip()
    if not text:
        return UNKNOWN
    match = _VERSION.search(text) or _NUMBER.search(text)
    return match[1] if match else UNKNOWN


def os_release(text: str) -> str:
    """Cloud 66's operating_system form from /etc/os-release: `ubuntu` + `22.04` → `ubuntu2204`."""
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep:
            fields[name] = value.strip().strip("\"'")
    distro = fields.get("ID", "").lower()
    version = fields.get("VERSION_ID", "").replace(".", "")
    if not distro or not version or not re.fullmatch(r"[a-z0-9_-]+", distro + version):
        return UNKNOWN
    return f"{distro}{version}"


def mismatches(measured: Mapping[str, str], declared: Mapping[str, str]) -> dict[str, str]:
    """Declared keys whose measured version differs: key → "measured ≠ declared"."""
    return {
        key: f"{measured.get(key, UNKNOWN)} ≠ {want}"
        for key, want in sorted(declared.items())
        if normal(measured.get(key, UNKNOWN)) != normal(want)
    }


def normal(version: str) -> str:
    # GCP labels cannot hold dots: 2.7.0 is recorded as 2-7-0.
    return version.strip().lower().replace("-", ".").replace("_", ".")
