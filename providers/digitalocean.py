"""The DigitalOcean adapter: droplets from snapshots, scripts over SSH, load balancers.

Imported only when an app uses DigitalOcean. Calls go through ``Api`` (retries and errors in
one place). DigitalOcean has no client token, so a droplet carries ``byoi:key:<key>`` and
``launch`` looks that tag up before creating: a launch resumed after a crash finds the droplet
the crash left behind. Scripts run over SSH with byoi's own key pair, kept beside the database
and registered with the account on first use. A cohort's droplets are created a few requests at
a time and waited for in rounds, their scripts run at once on one event loop, and each tag is
given to all of them in one call; load balancers are in digitalocean_balancers.py.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
    ProviderError,
    ProviderTimeout,
    Script,
    ScriptResult,
    Server,
    ServerState,
    each,
    newest_usable,
    outcome,
)
from providers.calls import Gate, chunks, pooled, rounds
from providers.codec import describe_versions
from providers.digitalocean_api import Api, Unanswered, client
from providers.digitalocean_balancers import Balancers
from providers.digitalocean_codec import image_from, server_from, tag, version_tags
from providers.ssh import PinnedHosts, SshRunner, SshTarget, ensure_key_pair

TAGGED_PER_CALL = 100
"""Droplets named in one call that tags them."""
TOKEN_VARIABLES = ("DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN")


def token_from(environ: Mapping[str, str]) -> str:
    for name in TOKEN_VARIABLES:
        if environ.get(name):
            return environ[name]
    raise AuthError("no DigitalOcean token: set DIGITALOCEAN_TOKEN in the environment or .env")


class DigitalOceanProvider(Balancers):
    name = "digitalocean"

    def __init__(
        self, settings: Mapping[str, Any], environ: Mapping[str, str] = os.environ
    ) -> None:
        self.settings = dict(settings)
        self.gate = Gate()  # its API's requests in flight, whatever calls for many run at once
        self.poll_seconds = float(settings.get("poll_seconds", 5))
        self.wait_seconds = float(settings.get("wait_seconds", 600))
        self.api = Api(
            client(
                token_from(environ),
                settings.get("api_endpoint"),
                timeout=float(settings.get("read_timeout", 60)),
            ),
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
        return outcome(self.run_script_all([(server, script)])[0])

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        """Every script at once over SSH, on one event loop (ssh.py)."""
        runner, _ = self._ssh()
        targets = each(self._target, [server for server, _ in jobs])
        found = [(t, script) for t, (_, script) in zip(targets, jobs, strict=True)]
        ran = iter(runner.run_all([(t, s) for t, s in found if isinstance(t, SshTarget)]))
        return [t if isinstance(t, ProviderError) else next(ran) for t in targets]

    def _target(self, server: Server) -> SshTarget:
        if not server.address:
            raise NotFound(f"droplet {server.name} has no {self.network} address for SSH")
        return SshTarget(
            server.id,
            server.address,
            int(self.settings.get("ssh_port", 22)),
            str(self.settings.get("ssh_user", "root")),
        )

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
        return outcome(self.launch_all([request])[0])

    def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
        """Each droplet created (or found by its key), a few requests at a time; then one
        wait for all, in rounds, until each is active with an address."""
        _, key_id = self._ssh()
        unique = list({r.key: r for r in requests}.values())  # a key is one droplet
        created = pooled(lambda r: self._create(r, key_id), unique, self.gate)
        ids = [c for c in created if isinstance(c, str)]
        seen: dict[str, str] = {}

        def active(droplet_id: str) -> Server | None:
            droplet = self._get(droplet_id)
            if droplet is None:
                raise NotFound(f"droplet {droplet_id} vanished while starting")
            seen[droplet_id] = str(droplet.get("status", "new"))
            server = server_from(droplet, self.network)
            ready = server.state == ServerState.RUNNING and server.address is not None
            return server if ready else None

        def late(droplet_id: str, waited: float) -> ProviderError | None:
            if waited <= self.wait_seconds:
                return None
            status = seen.get(droplet_id, "new")
            return ProviderTimeout(
                f"droplet {droplet_id} is still {status} after {self.wait_seconds:g}s"
            )

        waited = dict(
            zip(
                ids,
                rounds(active, ids, late=late, poll_seconds=self.poll_seconds, gate=self.gate),
                strict=True,
            )
        )
        outcomes = {
            r.key: waited[c] if isinstance(c, str) else c
            for r, c in zip(unique, created, strict=True)
        }
        return [outcomes[r.key] for r in requests]

    def _create(self, request: LaunchRequest, key_id: int) -> str:
        """The id of the droplet carrying the request's key: found, or created."""
        for attempt in range(self.api.attempts):
            existing = self.list_servers({TAG_KEY: request.key})
            if existing:
                return existing[0].id
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
            return str(created["droplet"]["id"])
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
        if not droplet_id.isdigit():
            return None  # not a droplet's id
        try:
            data = self.api.call("read droplet", self.api.sdk.droplets.get, int(droplet_id))
        except NotFound:
            return None
        return dict(data["droplet"])

    def tag_server(self, server: Server, tags: Mapping[str, str]) -> None:
        outcome(self.tag_all([(server, tags)])[0])

    def tag_all(
        self, tagged: Sequence[tuple[Server, Mapping[str, str]]]
    ) -> list[ProviderError | None]:
        """Each tag given to all the droplets that get it in one call (droplets of one image
        measure alike); a tag of the same key with another value is taken off first. If a
        call is refused, each of its droplets is tagged alone, so only the refused one fails."""
        merged = _merged(tagged)
        droplets = pooled(lambda pair: self._existing(pair[0]), merged, self.gate)
        refused = {n: d for n, d in enumerate(droplets) if isinstance(d, ProviderError)}
        stale: dict[str, list[int]] = {}
        wanted: dict[str, list[int]] = {}
        for n, ((_, tags), droplet) in enumerate(zip(merged, droplets, strict=True)):
            if isinstance(droplet, ProviderError):
                continue
            names = [tag(k, v) for k, v in sorted(tags.items())]
            keys = [tag(k, "") for k in tags]  # `byoi:version:ruby_version:` and so on
            for name in droplet.get("tags") or []:
                if name not in names and any(name.startswith(k) for k in keys):
                    stale.setdefault(name, []).append(n)
            for name in names:
                wanted.setdefault(name, []).append(n)
        for name, indexes in stale.items():
            self._tag_many(name, merged, indexes, refused, untag=True)
        for name, indexes in wanted.items():
            self._tag_many(name, merged, indexes, refused, untag=False)
        where = {server.id: n for n, (server, _) in enumerate(merged)}
        return [refused.get(where[server.id]) for server, _ in tagged]

    def _tag_many(
        self,
        name: str,
        tagged: Sequence[tuple[Server, Mapping[str, str]]],
        indexes: list[int],
        refused: dict[int, ProviderError],
        *,
        untag: bool,
    ) -> None:
        """Give tag ``name`` to the droplets at ``indexes`` (or take it off) that no call has
        refused yet, a chunk at a time; a refused one's error kept in ``refused``."""
        sdk = self.api.sdk
        verb = "untag" if untag else "tag"
        call = sdk.tags.unassign_resources if untag else sdk.tags.assign_resources
        live = [(n, tagged[n][0]) for n in indexes if n not in refused]

        def given(servers: list[Server]) -> None:
            if not untag:
                self.api.call(f"create tag {name}", sdk.tags.create, {"name": name})
            resources = [{"resource_id": s.id, "resource_type": "droplet"} for s in servers]
            self.api.call(f"{verb} {name}", call, name, {"resources": resources})

        for chunk in chunks(live, TAGGED_PER_CALL):
            try:
                given([server for _, server in chunk])
            except ProviderError:  # which one was refused: each alone
                for n, server in chunk:
                    try:
                        given([server])
                    except ProviderError as exc:
                        refused[n] = exc

    def _existing(self, server: Server) -> dict[str, Any]:
        droplet = self._get(server.id)
        if droplet is None:
            raise NotFound(f"droplet {server.id} does not exist")
        return droplet

    def terminate(self, server: Server) -> None:
        if not server.id.isdigit():
            return  # no droplet has such an id: absent is fine
        try:
            self.api.call("delete droplet", self.api.sdk.droplets.destroy, int(server.id))
        except NotFound:
            return


def _merged(
    tagged: Sequence[tuple[Server, Mapping[str, str]]],
) -> list[tuple[Server, dict[str, str]]]:
    """One entry per server, its tags merged in order (a server named twice in one call)."""
    merged: dict[str, tuple[Server, dict[str, str]]] = {}
    for server, tags in tagged:
        merged.setdefault(server.id, (server, {}))[1].update(tags)
    return list(merged.values())
