"""An in-repo fake of the DigitalOcean v2 API paths byoi uses, for the real pydo client.

Droplets are ``new`` for ``droplet_polls`` reads, then ``active`` with a public address on
which a real SSH server (tests/fakes/sshd.py) starts ``ssh_delay`` seconds later. Actions are
``in-progress`` for ``action_polls`` reads. Snapshots copy the droplet's root tree, so a droplet
cloned from them starts with what the source had. Load balancers hold droplet ids and carry a
health check. Every request is recorded (with the time it arrived); ``fail`` answers the next
matching request with an error: 429 with ``ratelimit-reset``, 5xx, or 422 with a message.
"""

from __future__ import annotations

import itertools
import math
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

from tests.fakes.digitalocean_account import (
    ROUTES,
    AccountRoutes,
    Answer,
    error,
    image_resource,
    page,
)
from tests.fakes.http import DROP, FakeApi, Reply, Request
from tests.fakes.sshd import FakeHosts


@dataclass
class Fault:
    method: str
    pattern: str
    status: int
    message: str
    reset_in: float
    applied: bool


@dataclass
class FakeDigitalOcean(AccountRoutes, FakeApi):
    base: Path
    hosts: FakeHosts | None = None
    token: str = "do-test-token"
    droplet_polls: int = 2
    action_polls: int = 2
    ssh_delay: float = 0.3
    requests: list[Request] = field(default_factory=list)
    droplets: dict[int, dict[str, Any]] = field(default_factory=dict)
    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    keys: dict[int, dict[str, Any]] = field(default_factory=dict)
    balancers: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    resets: list[int] = field(default_factory=list)
    """The ``ratelimit-reset`` times sent with injected 429s."""
    _polls: dict[tuple[str, int], int] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1001))
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # test controls ------------------------------------------------------------------------

    def add_image(
        self,
        name: str,
        *,
        tags: list[str] | None = None,
        description: str = "",
        created: str = "2026-11-20T09:00:00Z",
        files: dict[str, str] | None = None,
        regions: list[str] | None = None,
    ) -> int:
        with self._lock:
            image_id = next(self._ids)
            root = self.base / "images" / str(image_id)
            root.mkdir(parents=True)
            for path, content in (files or {}).items():
                target = root / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
                if content.startswith("#!"):
                    target.chmod(0o755)  # a script is seeded runnable, as on a real image
            self.images[image_id] = image_resource(
                image_id, name, tags or [], description, created, regions or ["ams3"]
            )
            self.tags.update(tags or [])
            return image_id

    def add_balancer(self, name: str, health_check: dict[str, Any] | None = None) -> str:
        with self._lock:
            lb_id = f"4de7ac8b-495b-4884-9a69-1050c6793c{next(self._ids) % 100:02d}"
            self.balancers[lb_id] = {
                "id": lb_id,
                "name": name,
                "status": "active",
                "region": {"slug": "ams3"},
                "droplet_ids": [],
                "health_check": health_check
                or {"protocol": "http", "port": self.port, "path": "/healthz"},
            }
            return lb_id

    def fail(
        self,
        method: str,
        pattern: str,
        status: int,
        message: str = "",
        *,
        reset_in: float = 1.0,
        applied: bool = False,
    ) -> None:
        """Answer the next request matching with ``status`` (one entry per failure);
        ``applied``: the request takes effect all the same (a 5xx after the work was done)."""
        with self._lock:
            self.faults.append(Fault(method, pattern, status, message, reset_in, applied))

    def by_tag(self, tag: str) -> list[dict[str, Any]]:
        with self._lock:
            return [d for d in self.droplets.values() if tag in d["tags"]]

    # serving ------------------------------------------------------------------------------

    def _answer(self, request: Request, headers: Message) -> Reply:
        if request.path == "/healthz":
            return 200, {"ok": True}, {}
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, error("unauthorized", "Unable to authenticate you"), {}
        for index, fault in enumerate(self.faults):
            if fault.method == request.method and re.search(fault.pattern, request.path):
                del self.faults[index]
                if fault.applied:
                    self._route(request)
                return self._fault(fault)
        return (*self._route(request), {})

    def _route(self, request: Request) -> Answer:
        answer = self._dispatch(ROUTES, request, request.path)
        if answer is None:
            return 404, error("not_found", f"no route for {request.method} {request.path}")
        return answer

    def _fault(self, fault: Fault) -> Reply:
        if fault.status == 429:
            reset = math.ceil(time.time() + fault.reset_in)
            self.resets.append(reset)
            headers = {
                "ratelimit-limit": "5000",
                "ratelimit-remaining": "0",
                "ratelimit-reset": str(reset),
            }
            return 429, error("too_many_requests", "API Rate limit exceeded."), headers
        if fault.status == 422:
            return 422, error("unprocessable_entity", fault.message), {}
        if fault.status == DROP:
            return DROP, None, {}
        return fault.status, error("server_error", fault.message or "Server Error"), {}

    def _poll(self, kind: str, ident: int, limit: int) -> bool:
        """True once this resource has been read ``limit`` times."""
        count = self._polls.get((kind, ident), 0) + 1
        self._polls[(kind, ident)] = count
        return count >= limit

    # images -------------------------------------------------------------------------------------

    def get_images(self, query: dict[str, str], **_: Any) -> Answer:
        images = [i for i in self.images.values() if i["status"] != "deleted"]
        if query.get("private") == "true":
            images = [i for i in images if not i["public"]]
        if query.get("tag_name"):
            images = [i for i in images if query["tag_name"] in i["tags"]]
        return 200, page("images", images, query)

    def get_image(self, ident: str, **_: Any) -> Answer:
        image = self._image(ident)
        if image is None:
            return 404, error("not_found", "The resource you were accessing could not be found.")
        return 200, {"image": image}

    def _image(self, ident: str) -> dict[str, Any] | None:
        if ident.isdigit():
            return self.images.get(int(ident))
        return next((i for i in self.images.values() if i.get("slug") == ident), None)

    def put_image(self, ident: str, body: dict[str, Any], **_: Any) -> Answer:
        image = self._image(ident)
        if image is None:
            return 404, error("not_found", "The resource you were accessing could not be found.")
        for key in ("name", "description", "distribution"):
            if key in body:
                image[key] = body[key]
        return 200, {"image": image}

    def delete_image(self, ident: str, **_: Any) -> Answer:
        image = self.images.get(int(ident))
        if image is None or image["public"]:
            return 404, error("not_found", "The resource you were accessing could not be found.")
        del self.images[int(ident)]
        return 204, None

    # droplets -----------------------------------------------------------------------------------

    def get_droplets(self, query: dict[str, str], **_: Any) -> Answer:
        droplets = list(self.droplets.values())
        if query.get("tag_name"):
            droplets = [d for d in droplets if query["tag_name"] in d["tags"]]
        return 200, page("droplets", [self._advance(d) for d in droplets], query)

    def get_droplet(self, ident: str, **_: Any) -> Answer:
        droplet = self.droplets.get(int(ident))
        if droplet is None:
            return 404, error("not_found", "The resource you were accessing could not be found.")
        return 200, {"droplet": self._advance(droplet)}

    def _advance(self, droplet: dict[str, Any]) -> dict[str, Any]:
        if droplet["status"] == "new" and self._poll("droplet", droplet["id"], self.droplet_polls):
            droplet["status"] = "active"
            address = self.hosts.address() if self.hosts else f"203.0.113.{droplet['id'] % 250}"
            droplet["networks"]["v4"] = [
                {"ip_address": address, "type": "public", "netmask": "255.0.0.0"},
                {"ip_address": f"10.110.0.{droplet['id'] % 250}", "type": "private"},
            ]
            if self.hosts is not None:
                self._boot(droplet, address)
        return droplet

    def _boot(self, droplet: dict[str, Any], address: str) -> None:
        assert self.hosts is not None
        authorized = [k["public_key"] for k in self.keys.values() if k["id"] in droplet["keys"]]
        image_root = self.base / "images" / str(droplet["image"]["id"])
        self.hosts.add(droplet["id"], address, image_root, authorized)
        hosts, ident = self.hosts, droplet["id"]
        timer = threading.Timer(
            self.ssh_delay, lambda: ident in self.droplets and hosts.start(ident)
        )
        timer.daemon = True
        timer.start()

    def post_droplets(self, body: dict[str, Any], **_: Any) -> Answer:
        image = self._image(str(body["image"]))
        if image is None:
            return 422, error("unprocessable_entity", "You specified an invalid image.")
        keys = [int(k) for k in body.get("ssh_keys", []) if int(k) in self.keys]
        droplet_id = next(self._ids)
        self.tags.update(body.get("tags", []))
        self.droplets[droplet_id] = {
            "id": droplet_id,
            "name": body["name"],
            "status": "new",
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "image": {"id": image["id"], "name": image["name"]},
            "size_slug": body.get("size"),
            "region": {"slug": body.get("region")},
            "vpc_uuid": body.get("vpc_uuid"),
            "tags": list(body.get("tags", [])),
            "networks": {"v4": [], "v6": []},
            "keys": keys,
        }
        return 202, {"droplet": self.droplets[droplet_id], "links": {"actions": []}}

    def delete_droplet(self, ident: str, **_: Any) -> Answer:
        droplet = self.droplets.pop(int(ident), None)
        if droplet is None:
            return 404, error("not_found", "The resource you were accessing could not be found.")
        self._gone(droplet["id"])
        return 204, None

    def delete_droplets(self, query: dict[str, str], **_: Any) -> Answer:
        for droplet in [d for d in self.droplets.values() if query["tag_name"] in d["tags"]]:
            del self.droplets[droplet["id"]]
            self._gone(droplet["id"])
        return 204, None

    def _gone(self, droplet_id: int) -> None:
        for lb in self.balancers.values():
            if droplet_id in lb["droplet_ids"]:
                lb["droplet_ids"].remove(droplet_id)
        if self.hosts is not None:
            self.hosts.stop(droplet_id)

    def get_droplet_snapshots(self, ident: str, query: dict[str, str], **_: Any) -> Answer:
        found = [i for i in self.images.values() if i.get("source") == int(ident)]
        return 200, page("snapshots", found, query)

    def post_droplet_action(self, ident: str, body: dict[str, Any], **_: Any) -> Answer:
        droplet = self.droplets.get(int(ident))
        if droplet is None:
            return 404, error("not_found", "The resource you were accessing could not be found.")
        if body.get("type") != "snapshot":
            return 422, error("unprocessable_entity", f"unsupported action {body.get('type')}")
        action_id = next(self._ids)
        self.actions[action_id] = {
            "id": action_id,
            "status": "in-progress",
            "type": "snapshot",
            "resource_id": droplet["id"],
            "resource_type": "droplet",
            "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "name": body.get("name") or f"{droplet['name']}-snapshot",
        }
        return 201, {"action": self.actions[action_id]}

    def get_action(self, ident: str, **_: Any) -> Answer:
        action = self.actions.get(int(ident))
        if action is None:
            return 404, error("not_found", "The resource you were accessing could not be found.")
        if action["status"] == "in-progress" and self._poll(
            "action", action["id"], self.action_polls
        ):
            self._finish_snapshot(action)
        return 200, {"action": {k: v for k, v in action.items() if k != "name"}}

    def _finish_snapshot(self, action: dict[str, Any]) -> None:
        droplet = self.droplets.get(action["resource_id"])
        if droplet is None:
            action["status"] = "errored"
            return
        action["status"] = "completed"
        image_id = next(self._ids)
        source = self.hosts.hosts[droplet["id"]].root if self.hosts else None
        if source is not None and source.is_dir():
            shutil.copytree(source, self.base / "images" / str(image_id), symlinks=True)
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        image = image_resource(
            image_id, action["name"], [], "", created, [droplet["region"]["slug"]]
        )
        image["source"] = droplet["id"]
        self.images[image_id] = image
