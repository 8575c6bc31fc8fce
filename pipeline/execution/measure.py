"""Measuring an image's versions: a throwaway server cloned from it runs version probes through
the provider's script channel, so what is recorded is what the machine printed.

``probe_versions`` is the one place that knows the probe commands; the shared version probes
can replace its body without touching its callers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from providers.base import (
    Image,
    LaunchRequest,
    Provider,
    Script,
    ScriptFailed,
    Server,
    ServerSpec,
)

# Each probe prints `key=value` lines. Tools are looked up under $BYOI_ROOT (the local
# provider's server tree) or, on a real server, on the system itself; never from user text.
PROBE_SCRIPT = r"""
set -u
root="${BYOI_ROOT:-}"
tool() {
  for dir in usr/local/bin usr/bin bin; do
    if [ -x "$root/$dir/$1" ]; then echo "$root/$dir/$1"; return 0; fi
  done
  if [ -z "$root" ]; then command -v "$1"; fi
}
number() { grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1; }
for key in $BYOI_PROBE_KEYS; do
  value=""
  case "$key" in
    ruby_version) bin=$(tool ruby) && value=$("$bin" --version 2>&1 | number) ;;
    node_version) bin=$(tool node) && value=$("$bin" --version 2>&1 | number) ;;
    python_version) bin=$(tool python3) && value=$("$bin" --version 2>&1 | number) ;;
    docker_version) bin=$(tool docker) && value=$("$bin" --version 2>&1 | number) ;;
    operating_system)
      if [ -r "$root/etc/os-release" ]; then
        value=$(. "$root/etc/os-release" && echo "${ID:-}${VERSION_ID:-}" | tr -d '.')
      fi ;;
  esac
  if [ -n "$value" ]; then echo "$key=$value"; fi
done
exit 0
"""
_LINE = re.compile(r"^([a-z_]+)=([A-Za-z0-9._+-]{1,64})$")


def probe_versions(provider: Provider, server: Server, keys: Iterable[str]) -> dict[str, str]:
    """Run the version probes for ``keys`` on ``server``; a key no probe can measure is absent."""
    wanted = sorted({k for k in keys if re.fullmatch(r"[a-z_]+", k)})
    script = Script("probe", PROBE_SCRIPT, {"BYOI_PROBE_KEYS": " ".join(wanted)}, 120.0)
    result = provider.run_script(server, script)
    if not result.ok:
        raise ScriptFailed(
            f"probes exited {result.exit_code}: {result.tail(3)}",
            exit_code=result.exit_code,
            output=result.output,
        )
    found = {}
    for line in result.output.splitlines():
        match = _LINE.match(line.strip())
        if match and match.group(1) in wanted:
            found[match.group(1)] = match.group(2)
    return found


def measure_image(
    provider: Provider, image: Image, keys: Iterable[str], *, key: str, tags: Mapping[str, str]
) -> dict[str, str]:
    """Versions of ``image``, measured on a server cloned from it (terminated afterwards)."""
    request = LaunchRequest(
        key=key, name=key, image=image, spec=ServerSpec(), tags={**tags, "byoi:purpose": "probe"}
    )
    server = provider.launch(request)
    try:
        return probe_versions(provider, server, keys)
    finally:
        provider.terminate(server)
