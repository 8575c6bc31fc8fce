"""An in-repo fake of the Compute Engine REST API, for the real google-cloud-compute clients.

It serves the exact paths and JSON shapes the REST transport uses for images, instances,
guest attributes, unmanaged instance groups and zone/global operations. Operations stay
RUNNING for ``operation_polls`` polls, so code that polls anything but the operations
endpoints it was given (``ExtendedOperation.result()`` polls Google's) never sees them finish.
It records every request, honours ``requestId`` (a repeated one returns the first operation),
and can answer with HTTP errors or failed operations on demand. The "guest" reports each
startup-script step named in the ``byoi-steps`` metadata as a guest attribute once the
instance runs. Operations and instance groups are in compute_operations.py, serving in http.py.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any

from tests.fakes.compute_operations import (
    PREFIX,
    ROUTES,
    Operation,
    OperationRoutes,
    error,
    page,
    timestamp,
)
from tests.fakes.http import FakeApi, Reply, Request


@dataclass
class FakeCompute(OperationRoutes, FakeApi):
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

    # serving ------------------------------------------------------------------------------

    def _fault(self, method: str, path: str) -> int | None:
        for index, (m, pattern, status) in enumerate(self.http_faults):
            if m == method and re.search(pattern, path):
                del self.http_faults[index]
                return status
        return None

    def _answer(self, request: Request, headers: Message) -> Reply:
        status = self._fault(request.method, request.path)
        if status is not None:
            return status, error(status, "injected by the test"), {}
        if not request.path.startswith(f"{PREFIX}{self.project}/"):
            return 404, error(404, f"unknown project in {request.path}"), {}
        answer = self._dispatch(
            ROUTES, request, request.path.removeprefix(f"{PREFIX}{self.project}/")
        )
        if answer is None:
            return 404, error(404, f"no route for {request.method} {request.path}"), {}
        return (*answer, {})

    # images -----------------------------------------------------------------------------------

    def get_image(self, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        image = self.images.get(name)
        return (200, image) if image else (404, error(404, f"image {name} was not found"))

    def get_image_family(self, family: str, **_: Any) -> tuple[int, dict[str, Any]]:
        usable = [
            i
            for i in self.images.values()
            if i["family"] == family and i["status"] == "READY" and "deprecated" not in i
        ]
        if not usable:
            return 404, error(404, f"family {family} has no usable image")
        return 200, max(usable, key=lambda i: timestamp(i["creationTimestamp"]))

    def delete_image(
        self, name: str, query: dict[str, str], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        if name not in self.images and query.get("requestId") not in self.by_request_id:
            return 404, error(404, f"image {name} was not found")

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
        return 200, page(images, query, "compute#imageList")

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
            return 404, error(404, f"instance {name} was not found")
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
            return 409, error(409, f"The resource '{name}' already exists")

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
            return 404, error(404, f"instance {name} was not found")

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
            return 404, error(404, f"instance {name} was not found")
        if body.get("labelFingerprint", "") != instance.get("labelFingerprint", ""):
            return 412, error(412, "Labels fingerprint either invalid or resource labels changed")

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
            return 404, error(404, f"instance {name} was not found")
        namespace = query.get("queryPath", "").strip("/")
        found = self.attributes.get((zone, name), {})
        if not found:
            return 404, error(404, "The resource 'guest attributes' was not found")
        items = [{"namespace": namespace, "key": k, "value": v} for k, v in found.items()]
        return 200, {
            "kind": "compute#guestAttributes",
            "queryPath": query.get("queryPath"),
            "queryValue": {"items": items},
        }
