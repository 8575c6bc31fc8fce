"""The DigitalOcean adapter: droplets from snapshots, scripts over SSH, load balancers.

Imported only when an app uses DigitalOcean. Calls go through ``Api`` (retries and errors in
one place). DigitalOcean has no client token, so a droplet carries ``byoi:key:<key>`` and
``launch`` looks that tag up before creating: a launch resumed after a crash finds the droplet
the crash left behind. Scripts run over SSH with byoi's own key pair, kept beside the database
and registered with the account on first use.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers.base import (
    TAG_FAMILY,
    TAG_KEY,
    TAG_SOURCE,
    AuthError,
    Image,
    InvalidRequest,
    LaunchRequest,
    NotFound,
    ProviderTimeout,
    RegistrationFailed,
    Script,
    ScriptResult,
    Server,
    ServerState,
    Target,
    newest_usable,
)
from providers.codec import describe_versions
from providers.digitalocean_api import Api, Unanswered, client
from providers.digitalocean_codec import image_from, server_from, tag, version_tags
from providers.ssh import PinnedHosts, SshRunner, SshTarget, ensure_key_pair

TOKEN_VARIABLES = ("DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN")
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


def token_from(environ: Mapping[str, str]) -> str:
    for name in TOKEN_VARIABLES:
        if environ.get(name):
            return environ[name]
    raise AuthError("no DigitalOcean token: set DIGITALOCEAN_TOKEN in the environment or .env")


class DigitalOceanProvider:
    name = "digitalocean"

    def __init__(
        self, settings: Mapping[str, Any], environ: Mapping[str, str] = os.environ
    ) -> None:
        self.settings = dict(settings)
        self.poll_seconds = float(settings.get("poll_seconds", 5))
        self.wait_seconds = float(settings.get("wait_seconds", 600))
        self.api = Api(
            client(token_from(environ), settings.get("api_endpoint"), timeout=60),
            attempts=int(settings.get("max_attempts", 5)),
            longest_wait=self.wait_seconds,
        )
        self.ssh_dir = Path(settings.get("ssh_dir") or "byoi-ssh")
        self.network = str(settings.get("ssh_network", "public"))
        self._lock = threading.Lock()
        self._runner: SshRunner | None = None
        self._key_id: int | None = None
        self._balancers: dict[str, str] = {}

    # ssh --------------------------------------------------------------------------------

    def _ssh(self) -> tuple[SshRunner, int]:
        """byoi's key pair, created and registered with the account on first use."""
        with self._lock:
            if self._runner is None or self._key_id is None:
                keys = ensure_key_pair(self.ssh_dir)
                self._key_id = self._account_key(keys.fingerprint, keys.public_key)
                self._runner = SshRunner(
                    keys,
                    PinnedHosts(self.ssh_dir / "known_hosts"),
                    connect_seconds=float(self.settings.get("ssh_wait_seconds", 300)),
                )
            return self._runner, self._key_id

    def _account_key(self, fingerprint: str, public_key: str) -> int:
        sdk = self.api.sdk
        for key in self.api.all("list SSH keys", sdk.ssh_keys.list, "ssh_keys"):
            if key.get("fingerprint") == fingerprint:
                return int(key["id"])
        body = {"name": f"byoi@{socket.gethostname()}", "public_key": public_key}
        created = self.api.call("register byoi's SSH key", sdk.ssh_keys.create, body)
        return int(created["ssh_key"]["id"])

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        runner, _ = self._ssh()
        if not server.address:
            raise NotFound(f"droplet {server.name} has no {self.network} address for SSH")
        target = SshTarget(
            server.id,
            server.address,
            int(self.settings.get("ssh_port", 22)),
            str(self.settings.get("ssh_user", "root")),
        )
        return runner.run(target, script)

    # images -----------------------------------------------------------------------------

    def list_images(self, family: str | None = None) -> list[Image]:
        query: dict[str, Any] = {"private": True}
        if family:
            query["tag_name"] = tag(TAG_FAMILY, family)
        found = self.api.all("list images", self.api.sdk.images.list, "images", **query)
        return [image_from(i) for i in found]

    def resolve_image(self, ref: str) -> Image:
        if ref.startswith("family:"):
            family = ref.removeprefix("family:")
            newest = newest_usable(self.list_images(family), datetime.now(UTC))
            if newest is None:
                raise NotFound(f"no available snapshot tagged {tag(TAG_FAMILY, family)}")
            return newest
        if not ref.isdigit():
            named = [i for i in self.list_images() if i.name == ref]
            if named:
                return max(named, key=lambda i: (i.created_at, i.id))
        try:  # an id, or a public image's slug
            data = self.api.call(f"find image {ref}", self.api.sdk.images.get, ref)
        except NotFound as exc:
            raise NotFound(f"no image with id, name or slug {ref!r}") from exc
        return image_from(data["image"])

    def snapshot(
        self,
        server: Server,
        *,
        name: str,
        family: str | None,
        versions: Mapping[str, str],
        tags: Mapping[str, str] | None = None,
    ) -> Image:
        found = self._snapshot_named(server.id, name)
        if found is None:  # a resumed refresh does not snapshot twice
            action = self.api.call(
                "snapshot droplet",
                self.api.sdk.droplet_actions.post,
                int(server.id),
                {"type": "snapshot", "name": name},
                repeatable=False,
            )
            self._wait_action(int(action["action"]["id"]), f"snapshot of {server.name}")
            found = self._snapshot_named(server.id, name)
            if found is None:
                raise NotFound(f"snapshot {name} of {server.name} did not appear")
        image_id = int(found["id"])
        body = {"name": name, "description": describe_versions(versions)}
        self.api.call("describe image", self.api.sdk.images.update, image_id, body)
        names = [*version_tags(versions), tag(TAG_SOURCE, server.id)]
        names += [tag(k, v) for k, v in sorted((tags or {}).items())]
        if family:
            names.append(tag(TAG_FAMILY, family))
        for name_ in names:
            self._tag(name_, {"resource_id": str(image_id), "resource_type": "image"})
        return self.resolve_image(str(image_id))

    def delete_image(self, image: Image) -> None:
        """A snapshot is deleted with its storage (DigitalOcean keeps none apart)."""
        try:
            self.api.call(f"delete image {image.name}", self.api.sdk.images.delete, int(image.id))
        except NotFound:
            return

    def _snapshot_named(self, droplet_id: str, name: str) -> dict[str, Any] | None:
        listing = self.api.all(
            "list snapshots", self.api.sdk.droplets.list_snapshots, "snapshots", int(droplet_id)
        )
        named = [s for s in listing if s.get("name") == name]
        return max(named, key=lambda s: str(s.get("created_at"))) if named else None

    def _tag(self, name: str, resource: dict[str, str]) -> None:
        sdk = self.api.sdk
        self.api.call(f"create tag {name}", sdk.tags.create, {"name": name})
        self.api.call(
            f"tag with {name}", sdk.tags.assign_resources, name, {"resources": [resource]}
        )

    def _wait_action(self, action_id: int, what: str) -> None:
        def done() -> bool:
            action = self.api.call("read action", self.api.sdk.actions.get, action_id)
            status = action["action"]["status"]
            if status == "errored":
                raise NotFound(f"{what} failed (action {action_id} errored)")
            return bool(status == "completed")

        self._until(done, f"{what} is still in progress")

    def _until(self, check: Callable[[], bool], timeout_reason: str) -> None:
        deadline = time.monotonic() + self.wait_seconds
        while not check():
            if time.monotonic() > deadline:
                raise ProviderTimeout(f"{timeout_reason} after {self.wait_seconds:g}s")
            time.sleep(self.poll_seconds)

    # droplets ---------------------------------------------------------------------------

    def list_servers(self, tags: Mapping[str, str]) -> list[Server]:
        wanted = [tag(k, v) for k, v in sorted(tags.items(), key=lambda kv: kv[0] != TAG_KEY)]
        query = {"tag_name": wanted[0]} if wanted else {}
        found = self.api.all("list droplets", self.api.sdk.droplets.list, "droplets", **query)
        return [
            server_from(d, self.network)
            for d in found
            if all(w in d.get("tags", []) for w in wanted) and d.get("status") != "archive"
        ]

    def launch(self, request: LaunchRequest) -> Server:
        _, key_id = self._ssh()
        for attempt in range(self.api.attempts):
            existing = self.list_servers({TAG_KEY: request.key})
            if existing:
                return self._wait_active(existing[0].id)
            body = self._droplet(request, key_id)
            try:
                created = self.api.call(
                    f"create droplet {request.name}",
                    self.api.sdk.droplets.create,
                    body,
                    repeatable=False,
                )
            except Unanswered:
                # Look the key up again (the droplet may exist after all), after a pause.
                time.sleep(min(0.5 * 2**attempt, 5.0))
                continue
            return self._wait_active(str(created["droplet"]["id"]))
        raise ProviderTimeout(f"create droplet {request.name}: DigitalOcean kept failing")

    def _droplet(self, request: LaunchRequest, key_id: int) -> dict[str, Any]:
        spec, image = request.spec, request.image
        region = spec.region or spec.zone or self.settings.get("region")
        if not region:
            raise InvalidRequest(
                f"no region for {request.name}: set server.region in the manifest "
                "or providers.digitalocean.region"
            )
        body: dict[str, Any] = {
            "name": request.key,
            "region": region,
            "size": spec.size or self.settings.get("size", "s-1vcpu-1gb"),
            "image": int(image.id) if image.id.isdigit() else image.id,
            "ssh_keys": [key_id],
            "tags": [tag(k, v) for k, v in {**request.tags, TAG_KEY: request.key}.items()],
            "monitoring": True,
        }
        vpc = spec.subnet or self.settings.get("vpc_uuid")
        if vpc:
            body["vpc_uuid"] = vpc
        return body

    def _get(self, droplet_id: str) -> dict[str, Any] | None:
        try:
            data = self.api.call("read droplet", self.api.sdk.droplets.get, int(droplet_id))
        except NotFound:
            return None
        return dict(data["droplet"])

    def _wait_active(self, droplet_id: str) -> Server:
        seen: dict[str, Any] = {}

        def active() -> bool:
            droplet = self._get(droplet_id)
            if droplet is None:
                raise NotFound(f"droplet {droplet_id} vanished while starting")
            seen.update(droplet)
            server = server_from(droplet, self.network)
            return server.state == ServerState.RUNNING and server.address is not None

        self._until(active, f"droplet {droplet_id} is still {seen.get('status', 'new')}")
        return server_from(seen, self.network)

    def tag_server(self, server: Server, tags: Mapping[str, str]) -> None:
        """Tag the droplet; a tag of the same key with another value is taken off first."""
        droplet = self._get(server.id)
        if droplet is None:
            raise NotFound(f"droplet {server.id} does not exist")
        resource = {"resource_id": server.id, "resource_type": "droplet"}
        wanted = [tag(k, v) for k, v in sorted(tags.items())]
        keys = [tag(k, "") for k in tags]  # `byoi:version:ruby_version:` and so on
        for name in droplet.get("tags") or []:
            if name not in wanted and any(name.startswith(k) for k in keys):
                self.api.call(
                    f"untag {name}",
                    self.api.sdk.tags.unassign_resources,
                    name,
                    {"resources": [resource]},
                )
        for name in wanted:
            self._tag(name, resource)

    def terminate(self, server: Server) -> None:
        try:
            self.api.call("delete droplet", self.api.sdk.droplets.destroy, int(server.id))
        except NotFound:
            return

    # load balancers ---------------------------------------------------------------------

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
        lb = self._balancer(target)
        body = {"droplet_ids": [int(server.id)]}
        self.api.call(
            f"add to {target.name}", self.api.sdk.load_balancers.add_droplets, lb["id"], body
        )

        def holds() -> bool:
            current = self._balancer(target)
            return current.get("status") == "active" and int(server.id) in (
                current.get("droplet_ids") or []
            )

        try:
            self._until(holds, f"{target.name} does not list {server.name}")
            self._until(
                lambda: self._passes_check(server, lb.get("health_check") or {}),
                f"{server.name} fails the health check of {target.name}",
            )
        except ProviderTimeout as exc:
            raise RegistrationFailed(exc.reason) from exc

    def _passes_check(self, server: Server, check: Mapping[str, Any]) -> bool:
        if not check.get("port"):
            return True
        env = {
            "BYOI_CHECK_PROTOCOL": str(check.get("protocol", "tcp")),
            "BYOI_CHECK_PORT": str(check["port"]),
            "BYOI_CHECK_PATH": str(check.get("path") or "/"),
        }
        return self.run_script(server, Script("lb-health", LB_CHECK, env, 30)).ok

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
