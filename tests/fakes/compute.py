"""An in-repo fake of the Compute Engine REST API, for the real google-cloud-compute clients.

It serves the exact paths and JSON shapes the REST transport uses for images, instances,
guest attributes, unmanaged instance groups and zone/global operations. Operations stay
RUNNING for ``operation_polls`` polls, so code that polls anything but the operations
endpoints it was given (``ExtendedOperation.result()`` polls Google's) never sees them finish.
It records every request, honours ``requestId`` (a repeated one returns the first operation),
and can answer with HTTP errors or failed operations on demand. The "guest" reports each
startup-script step named in the ``byoi-steps`` metadata as a guest attribute once the
instance runs.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PREFIX = "/compute/v1/projects/"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]


@dataclass
class Operation:
    name: str
    kind: str
    target: str
    zone: str | None
    polls: int
    effect: Any = None
    error: tuple[str, str] | None = None
    done: bool = False

    def resource(self, base: str, project: str) -> dict[str, Any]:
        scope = f"zones/{self.zone}" if self.zone else "global"
        body: dict[str, Any] = {
            "kind": "compute#operation",
            "name": self.name,
            "id": str(abs(hash(self.name)))[:12],
            "operationType": self.kind,
            "targetLink": self.target,
            "status": "DONE" if self.done else "RUNNING",
            "selfLink": f"{base}{PREFIX}{project}/{scope}/operations/{self.name}",
        }
        if self.zone:
            body["zone"] = f"{base}{PREFIX}{project}/zones/{self.zone}"
        if self.done and self.error:
            body["error"] = {"errors": [{"code": self.error[0], "message": self.error[1]}]}
        return body


@dataclass
class FakeCompute:
    project: str = "byoi-test"
    operation_polls: int = 2
    requests: list[Request] = field(default_factory=list)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    groups: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    attributes: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    by_request_id: dict[str, str] = field(default_factory=dict)
    http_faults: list[tuple[str, str, int]] = field(default_factory=list)
    operation_faults: list[tuple[str, str, str, str]] = field(default_factory=list)
    step_failures: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    step_outputs: dict[str, str] = field(default_factory=dict)
    """What the guest reports as a step's output (by step name), e.g. the probe's lines."""
    stuck: set[str] = field(default_factory=set)
    """Instance names that never get past PROVISIONING."""
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _server: ThreadingHTTPServer | None = None

    # running -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeCompute:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def do_DELETE(self) -> None:
                fake._serve(self, "DELETE")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # test controls ------------------------------------------------------------------------

    def add_image(
        self,
        name: str,
        family: str | None = None,
        labels: dict[str, str] | None = None,
        created: str = "2026-11-01T09:00:00.000-07:00",
        deprecated: str | None = None,
    ) -> None:
        with self._lock:
            self.images[name] = {
                "kind": "compute#image",
                "name": name,
                "id": str(next(self._ids)),
                "family": family or "",
                "labels": labels or {},
                "status": "READY",
                "creationTimestamp": created,
                "selfLink": f"{self.url}{PREFIX}{self.project}/global/images/{name}",
            }
            if deprecated:
                self.images[name]["deprecated"] = {"state": deprecated}

    def add_group(self, zone: str, name: str) -> None:
        with self._lock:
            self.groups[(zone, name)] = []

    def fail_http(self, method: str, path_pattern: str, status: int) -> None:
        """Answer the next request matching with ``status`` (one entry per failure)."""
        with self._lock:
            self.http_faults.append((method, path_pattern, status))

    def fail_operation(self, kind: str, target_pattern: str, code: str, message: str) -> None:
        """The next operation of ``kind`` on a matching target ends DONE with this error."""
        with self._lock:
            self.operation_faults.append((kind, target_pattern, code, message))

    def fail_step(self, instance: str, step: str, exit_code: int, output: str) -> None:
        with self._lock:
            self.step_failures[(instance, step)] = (exit_code, output)

    def forget_request_ids(self) -> None:
        """As Compute Engine does after a while: a repeated requestId is a new request again."""
        with self._lock:
            self.by_request_id.clear()

    def answer_step(self, step: str, output: str) -> None:
        """The guest reports ``output`` for ``step`` on every instance (e.g. probe lines)."""
        with self._lock:
            self.step_outputs[step] = output

    def calls(self, method: str, pattern: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    # serving ------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        length = int(handler.headers.get("Content-Length", "0") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        with self._lock:
            self.requests.append(Request(method, parsed.path, query, body))
            status, answer = self._route(method, parsed.path, query, body)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _fault(self, method: str, path: str) -> int | None:
        for index, (m, pattern, status) in enumerate(self.http_faults):
            if m == method and re.search(pattern, path):
                del self.http_faults[index]
                return status
        return None

    def _route(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        status = self._fault(method, path)
        if status is not None:
            return status, _error(status, "injected by the test")
        if not path.startswith(f"{PREFIX}{self.project}/"):
            return 404, _error(404, f"unknown project in {path}")
        rest = path.removeprefix(f"{PREFIX}{self.project}/")
        for pattern, name in ROUTES:
            match = re.fullmatch(pattern, rest)
            if match and name.startswith(method.lower() + "_"):
                result: tuple[int, dict[str, Any]] = getattr(self, name)(
                    query=query, body=body, **match.groupdict()
                )
                return result
        return 404, _error(404, f"no route for {method} {path}")

    # operations -----------------------------------------------------------------------------

    def _operation(
        self, kind: str, target: str, zone: str | None, query: dict[str, str], effect: Any
    ) -> tuple[int, dict[str, Any]]:
        request_id = query.get("requestId")
        if request_id and request_id in self.by_request_id:
            existing = self.operations[self.by_request_id[request_id]]
            return 200, existing.resource(self.url, self.project)
        operation = Operation(
            f"operation-{next(self._ids)}", kind, target, zone, self.operation_polls, effect
        )
        for index, (k, pattern, code, message) in enumerate(self.operation_faults):
            if k == kind and re.search(pattern, target):
                operation.error = (code, message)
                del self.operation_faults[index]
                break
        self.operations[operation.name] = operation
        if request_id:
            self.by_request_id[request_id] = operation.name
        if operation.error is None and effect is not None:
            effect("start")
        return 200, operation.resource(self.url, self.project)

    def _poll(self, name: str) -> tuple[int, dict[str, Any]]:
        operation = self.operations.get(name)
        if operation is None:
            return 404, _error(404, f"operation {name} not found")
        if not operation.done:
            operation.polls -= 1
            if operation.polls <= 0:
                operation.done = True
                if operation.effect is not None:
                    operation.effect("fail" if operation.error else "done")
        return 200, operation.resource(self.url, self.project)

    def get_zone_operation(self, zone: str, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        return self._poll(name)

    def post_zone_operation_wait(
        self, zone: str, name: str, **_: Any
    ) -> tuple[int, dict[str, Any]]:
        return self._poll(name)

    def get_global_operation(self, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        return self._poll(name)

    def post_global_operation_wait(self, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        return self._poll(name)

    # images -----------------------------------------------------------------------------------

    def get_image(self, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        image = self.images.get(name)
        return (200, image) if image else (404, _error(404, f"image {name} was not found"))

    def get_image_family(self, family: str, **_: Any) -> tuple[int, dict[str, Any]]:
        usable = [
            i
            for i in self.images.values()
            if i["family"] == family and i["status"] == "READY" and "deprecated" not in i
        ]
        if not usable:
            return 404, _error(404, f"family {family} has no usable image")
        return 200, max(usable, key=lambda i: _ts(i["creationTimestamp"]))

    def delete_image(
        self, name: str, query: dict[str, str], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        if name not in self.images and query.get("requestId") not in self.by_request_id:
            return 404, _error(404, f"image {name} was not found")

        def effect(phase: str) -> None:
            if phase == "done":
                self.images.pop(name, None)

        target = f"{self.url}{PREFIX}{self.project}/global/images/{name}"
        return self._operation("delete", target, None, query, effect)

    def get_images(self, query: dict[str, str], **_: Any) -> tuple[int, dict[str, Any]]:
        images = list(self.images.values())
        match = re.search(r'family\s*=\s*"([^"]*)"', query.get("filter", ""))
        if match:
            images = [i for i in images if i["family"] == match[1]]
        return 200, _page(images, query, "compute#imageList")

    def post_images(
        self, query: dict[str, str], body: dict[str, Any], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        name = body["name"]

        def effect(phase: str) -> None:
            if phase == "start":
                self.images[name] = {
                    **body,
                    "kind": "compute#image",
                    "id": str(next(self._ids)),
                    "status": "PENDING",
                    "family": body.get("family", ""),
                    "labels": body.get("labels", {}),
                    "creationTimestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                }
            elif phase == "done":
                self.images[name]["status"] = "READY"

        target = f"{self.url}{PREFIX}{self.project}/global/images/{name}"
        return self._operation("insert", target, None, query, effect)

    # instances --------------------------------------------------------------------------------

    def _link(self, zone: str, name: str) -> str:
        return f"{self.url}{PREFIX}{self.project}/zones/{zone}/instances/{name}"

    def get_instance(self, zone: str, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        instance = self.instances.get((zone, name))
        if instance is None:
            return 404, _error(404, f"instance {name} was not found")
        if instance["status"] == "STAGING":
            instance["status"] = "RUNNING"
            self._report_steps(zone, name)
        return 200, instance

    def get_aggregated_instances(
        self, query: dict[str, str], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        wanted = dict(re.findall(r'labels\.([\w-]+)\s*=\s*"([^"]*)"', query.get("filter", "")))
        items: dict[str, dict[str, Any]] = {}
        for (zone, _name), instance in sorted(self.instances.items()):
            if all(instance["labels"].get(k) == v for k, v in wanted.items()):
                items.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(instance)
        return 200, {"kind": "compute#instanceAggregatedList", "items": items}

    def post_instances(
        self, zone: str, query: dict[str, str], body: dict[str, Any], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        name = body["name"]
        if (zone, name) in self.instances and query.get("requestId") not in self.by_request_id:
            return 409, _error(409, f"The resource '{name}' already exists")

        def effect(phase: str) -> None:
            if phase == "start":
                self.instances[(zone, name)] = {
                    **body,
                    "kind": "compute#instance",
                    "id": str(next(self._ids)),
                    "status": "PROVISIONING",
                    "zone": f"{self.url}{PREFIX}{self.project}/zones/{zone}",
                    "selfLink": self._link(zone, name),
                    "labels": body.get("labels", {}),
                    "labelFingerprint": "42WmSpB8rSM=",
                    "creationTimestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "disks": [
                        {
                            "boot": True,
                            "autoDelete": True,
                            "source": f"{self.url}{PREFIX}{self.project}/zones/{zone}/disks/{name}",
                        }
                    ],
                    "networkInterfaces": [{"networkIP": f"10.0.0.{len(self.instances) + 2}"}],
                }
            elif phase == "done":
                if name not in self.stuck:
                    self.instances[(zone, name)]["status"] = "STAGING"
            else:
                self.instances.pop((zone, name), None)

        return self._operation("insert", self._link(zone, name), zone, query, effect)

    def delete_instance(
        self, zone: str, name: str, query: dict[str, str], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        if (zone, name) not in self.instances and query.get("requestId") not in self.by_request_id:
            return 404, _error(404, f"instance {name} was not found")

        def effect(phase: str) -> None:
            if phase == "start" and (zone, name) in self.instances:
                self.instances[(zone, name)]["status"] = "STOPPING"
            elif phase == "done":
                self.instances.pop((zone, name), None)
                for members in self.groups.values():
                    if self._link(zone, name) in members:
                        members.remove(self._link(zone, name))

        return self._operation("delete", self._link(zone, name), zone, query, effect)

    def post_instance_set_labels(
        self, zone: str, name: str, query: dict[str, str], body: dict[str, Any], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        instance = self.instances.get((zone, name))
        if instance is None:
            return 404, _error(404, f"instance {name} was not found")
        if body.get("labelFingerprint", "") != instance.get("labelFingerprint", ""):
            return 412, _error(412, "Labels fingerprint either invalid or resource labels changed")

        def effect(phase: str) -> None:
            if phase == "start":
                instance["labels"] = dict(body.get("labels", {}))
                instance["labelFingerprint"] = f"fp{next(self._ids)}"

        return self._operation("setLabels", self._link(zone, name), zone, query, effect)

    def _report_steps(self, zone: str, name: str) -> None:
        """The guest: each startup-script step reports its exit code and output."""
        items = {
            i["key"]: i["value"]
            for i in self.instances[(zone, name)].get("metadata", {}).get("items", [])
        }
        found = self.attributes.setdefault((zone, name), {})
        for step in [s for s in items.get("byoi-steps", "").split(",") if s]:
            default = (0, self.step_outputs.get(step, f"{step}: ok"))
            code, output = self.step_failures.get((name, step), default)
            found[f"{step}-output"] = output
            found[f"{step}-exit"] = str(code)
            if code != 0:
                break

    def get_guest_attributes(
        self, zone: str, name: str, query: dict[str, str], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        if (zone, name) not in self.instances:
            return 404, _error(404, f"instance {name} was not found")
        namespace = query.get("queryPath", "").strip("/")
        found = self.attributes.get((zone, name), {})
        if not found:
            return 404, _error(404, "The resource 'guest attributes' was not found")
        items = [{"namespace": namespace, "key": k, "value": v} for k, v in found.items()]
        return 200, {
            "kind": "compute#guestAttributes",
            "queryPath": query.get("queryPath"),
            "queryValue": {"items": items},
        }

    # instance groups ----------------------------------------------------------------------------

    def _group_change(
        self, zone: str, group: str, query: dict[str, str], body: dict[str, Any], add: bool
    ) -> tuple[int, dict[str, Any]]:
        if (zone, group) not in self.groups:
            return 404, _error(404, f"instance group {group} was not found")
        urls = [i["instance"].split("/projects/", 1)[-1] for i in body.get("instances", [])]
        if add and query.get("requestId") not in self.by_request_id:
            # As the real API: adding a member again, under a new (or forgotten) requestId,
            # is refused before any operation starts.
            members = self.groups[(zone, group)]
            present = [u for u in urls if f"{self.url}/compute/v1/projects/{u}" in members]
            if present:
                message = (
                    f"Resource 'projects/{present[0]}' is already a member of "
                    f"'projects/{self.project}/zones/{zone}/instanceGroups/{group}'."
                )
                return 400, _error(400, message, "memberAlreadyExists")

        def effect(phase: str) -> None:
            if phase != "done":
                return
            members = self.groups[(zone, group)]
            for url in urls:
                link = f"{self.url}/compute/v1/projects/{url}"
                if add and link not in members:
                    members.append(link)
                if not add and link in members:
                    members.remove(link)

        target = f"{self.url}{PREFIX}{self.project}/zones/{zone}/instanceGroups/{group}"
        return self._operation(
            "addInstances" if add else "removeInstances", target, zone, query, effect
        )

    def post_group_add(
        self, zone: str, group: str, query: dict[str, str], body: dict[str, Any], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        return self._group_change(zone, group, query, body, add=True)

    def post_group_remove(
        self, zone: str, group: str, query: dict[str, str], body: dict[str, Any], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        return self._group_change(zone, group, query, body, add=False)

    def post_group_list(
        self, zone: str, group: str, query: dict[str, str], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        if (zone, group) not in self.groups:
            return 404, _error(404, f"instance group {group} was not found")
        items = [{"instance": url, "status": "RUNNING"} for url in self.groups[(zone, group)]]
        return 200, _page(items, query, "compute#instanceGroupsListInstances")


ROUTES = [
    (r"zones/(?P<zone>[^/]+)/operations/(?P<name>[^/]+)", "get_zone_operation"),
    (r"zones/(?P<zone>[^/]+)/operations/(?P<name>[^/]+)/wait", "post_zone_operation_wait"),
    (r"global/operations/(?P<name>[^/]+)", "get_global_operation"),
    (r"global/operations/(?P<name>[^/]+)/wait", "post_global_operation_wait"),
    (r"global/images/family/(?P<family>[^/]+)", "get_image_family"),
    (r"global/images/(?P<name>[^/]+)", "get_image"),
    (r"global/images/(?P<name>[^/]+)", "delete_image"),
    (r"global/images", "get_images"),
    (r"global/images", "post_images"),
    (r"aggregated/instances", "get_aggregated_instances"),
    (r"zones/(?P<zone>[^/]+)/instances", "post_instances"),
    (r"zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)", "get_instance"),
    (r"zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)", "delete_instance"),
    (r"zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/getGuestAttributes", "get_guest_attributes"),
    (r"zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/setLabels", "post_instance_set_labels"),
    (r"zones/(?P<zone>[^/]+)/instanceGroups/(?P<group>[^/]+)/addInstances", "post_group_add"),
    (r"zones/(?P<zone>[^/]+)/instanceGroups/(?P<group>[^/]+)/removeInstances", "post_group_remove"),
    (r"zones/(?P<zone>[^/]+)/instanceGroups/(?P<group>[^/]+)/listInstances", "post_group_list"),
]


def _error(status: int, message: str, reason: str | None = None) -> dict[str, Any]:
    reason = reason or {
        404: "notFound",
        409: "alreadyExists",
        429: "rateLimitExceeded",
        503: "backendError",
    }.get(status, "error")
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _page(items: list[dict[str, Any]], query: dict[str, str], kind: str) -> dict[str, Any]:
    size = int(query.get("maxResults", "500"))
    start = int(query.get("pageToken", "0") or 0)
    page: dict[str, Any] = {"kind": kind, "items": items[start : start + size]}
    if start + size < len(items):
        page["nextPageToken"] = str(start + size)
    return page
