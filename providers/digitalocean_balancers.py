"""The DigitalOcean adapter's load balancers: droplets added in one call, then waited for until
the balancer lists them and each passes the balancer's health check, run on the droplet.

Mixed into ``DigitalOceanProvider`` (digitalocean.py), whose API client and scripts it uses.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from providers.base import (
    NotFound,
    ProviderError,
    RegistrationFailed,
    Script,
    ScriptResult,
    Server,
    Target,
    each,
    outcome,
)
from providers.calls import chunks
from providers.digitalocean_api import Api

MEMBERS_PER_CALL = 100
"""Droplets named in one call that adds them to a load balancer."""
_LB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# The load balancer's own health check, run on the droplet: DigitalOcean's API reports
# which droplets a balancer holds, not whether each passes its check.
LB_CHECK = """\
port="$BYOI_CHECK_PORT"
case "$BYOI_CHECK_PROTOCOL" in
  http | https)
    if command -v curl >/dev/null; then
      exec curl -fsS -k -o /dev/null --max-time 5 \\
        "$BYOI_CHECK_PROTOCOL://127.0.0.1:$port$BYOI_CHECK_PATH"
    fi ;;
esac
# tcp checks, and http(s) ones on a droplet without curl: the port accepts a connection
timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$port"
"""


class Balancers:
    # from the provider ----------------------------------------------------------------------

    api: Api
    poll_seconds: float
    wait_seconds: float
    _balancers: dict[str, str]

    def _until(self, check: Callable[[], bool], timeout_reason: str) -> None:
        raise NotImplementedError

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        raise NotImplementedError

    # load balancers -------------------------------------------------------------------------

    def _balancer(self, target: Target) -> dict[str, Any]:
        sdk = self.api.sdk
        lb_id = target.name if _LB_ID.match(target.name) else self._balancers.get(target.name)
        if lb_id is None:
            listing = self.api.all("list load balancers", sdk.load_balancers.list, "load_balancers")
            named = [lb for lb in listing if lb.get("name") == target.name]
            if not named:
                raise NotFound(f"no DigitalOcean load balancer with id or name {target.name!r}")
            lb_id = self._balancers[target.name] = str(named[0]["id"])
        found = self.api.call(f"read {target.name}", sdk.load_balancers.get, lb_id)
        return dict(found["load_balancer"])

    def target_members(self, target: Target) -> list[str]:
        return sorted(str(d) for d in self._balancer(target).get("droplet_ids") or [])

    def register(self, server: Server, target: Target) -> None:
        outcome(self.register_all([server], target)[0])

    def register_all(self, servers: Sequence[Server], target: Target) -> list[ProviderError | None]:
        """One call adds every droplet to the balancer; then rounds until it lists them all
        and each passes its health check. If the call is refused, each droplet is added alone,
        so only the refused one fails; so is each if the balancer cannot be read."""
        try:
            lb = self._balancer(target)
        except ProviderError:
            if len(servers) <= 1:
                raise
            return each(lambda s: outcome(self.register_all([s], target)[0]), servers)
        ids = list(dict.fromkeys(int(s.id) for s in servers if s.id.isdigit()))
        refused: dict[str, ProviderError] = {
            s.id: NotFound(f"droplet {s.id} does not exist") for s in servers if not s.id.isdigit()
        }
        for chunk in chunks(ids, MEMBERS_PER_CALL):
            try:
                self._add(lb["id"], target, chunk)
            except ProviderError as exc:
                if len(chunk) == 1:
                    refused[str(chunk[0])] = exc
                    continue
                for droplet_id in chunk:
                    try:
                        self._add(lb["id"], target, [droplet_id])
                    except ProviderError as alone:
                        refused[str(droplet_id)] = alone
        check = lb.get("health_check") or {}
        waiting = [s for s in {s.id: s for s in servers}.values() if s.id not in refused]
        late = self._until_listed(target, waiting) | self._until_healthy(target, waiting, check)
        failed = {i: RegistrationFailed(reason) for i, reason in late.items()}
        return [refused.get(s.id) or failed.get(s.id) for s in servers]

    def _add(self, lb_id: str, target: Target, ids: list[int]) -> None:
        body = {"droplet_ids": ids}
        self.api.call(
            f"add to {target.name}", self.api.sdk.load_balancers.add_droplets, lb_id, body
        )

    def _until_listed(self, target: Target, servers: list[Server]) -> dict[str, str]:
        """Rounds of the balancer's listing until it is active and lists every server; the
        reason for each it does not list in time."""
        waiting = {s.id: s for s in servers}
        deadline = time.monotonic() + self.wait_seconds
        failed = ""
        while waiting:
            try:
                current = self._balancer(target)
            except ProviderError as exc:  # one failed read is not every server's failure
                current, failed = {}, f" (last read: {exc.reason})"
            if current.get("status") == "active":
                for droplet_id in current.get("droplet_ids") or []:
                    waiting.pop(str(droplet_id), None)
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(self.poll_seconds)
        late = f"after {self.wait_seconds:g}s{failed}"
        return {i: f"{target.name} does not list {s.name} {late}" for i, s in waiting.items()}

    def _until_healthy(
        self, target: Target, servers: list[Server], check: Mapping[str, Any]
    ) -> dict[str, str]:
        """Rounds of the balancer's health check run on each server until it passes; the
        reason for each that does not pass in time."""
        if not check.get("port"):
            return {}
        env = {
            "BYOI_CHECK_PROTOCOL": str(check.get("protocol", "tcp")),
            "BYOI_CHECK_PORT": str(check["port"]),
            "BYOI_CHECK_PATH": str(check.get("path") or "/"),
        }
        script = Script("lb-health", LB_CHECK, env, 30)
        waiting, broken = list(servers), dict[str, str]()
        deadline = time.monotonic() + self.wait_seconds
        while waiting:
            answers = self.run_script_all([(s, script) for s in waiting])
            # A check that cannot run (no SSH, a changed host key) is not retried.
            broken.update(
                {
                    s.id: a.reason
                    for s, a in zip(waiting, answers, strict=True)
                    if isinstance(a, ProviderError)
                }
            )
            waiting = [
                s
                for s, a in zip(waiting, answers, strict=True)
                if isinstance(a, ScriptResult) and not a.ok
            ]
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(self.poll_seconds)
        late = f"after {self.wait_seconds:g}s"
        failing = {
            s.id: f"{s.name} fails the health check of {target.name} {late}" for s in waiting
        }
        return {**broken, **failing}

    def deregister(self, server: Server, target: Target) -> None:
        if server.id not in self.target_members(target):
            return
        lb_id = self._balancer(target)["id"]
        body = {"droplet_ids": [int(server.id)]}
        self.api.call(
            f"remove from {target.name}", self.api.sdk.load_balancers.remove_droplets, lb_id, body
        )
        self._until(
            lambda: server.id not in self.target_members(target),
            f"{target.name} still lists {server.name}",
        )
        if target.drain_seconds > 0:
            time.sleep(min(target.drain_seconds, self.wait_seconds))
