"""Operations and instance groups of the Compute Engine fake, its route table, and the JSON
shapes every part shares (errors, pages)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PREFIX = "/compute/v1/projects/"


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


class OperationRoutes:
    """Handlers mixed into ``FakeCompute``, which owns the tables they read."""

    project: str
    url: str
    operation_polls: int
    operations: dict[str, Operation]
    by_request_id: dict[str, str]
    operation_faults: list[tuple[str, str, str, str]]
    groups: dict[tuple[str, str], list[str]]
    _ids: Any

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
            return 404, error(404, f"operation {name} not found")
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

    # instance groups ----------------------------------------------------------------------------

    def _group_change(
        self, zone: str, group: str, query: dict[str, str], body: dict[str, Any], add: bool
    ) -> tuple[int, dict[str, Any]]:
        if (zone, group) not in self.groups:
            return 404, error(404, f"instance group {group} was not found")
        # A full URL or a partial one (`projects/p/zones/z/instances/n`): the part after it.
        urls = [i["instance"].split("projects/", 1)[-1] for i in body.get("instances", [])]
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
                return 400, error(400, message, "memberAlreadyExists")

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
            return 404, error(404, f"instance group {group} was not found")
        items = [{"instance": url, "status": "RUNNING"} for url in self.groups[(zone, group)]]
        return 200, page(items, query, "compute#instanceGroupsListInstances")


_ZONE = r"zones/(?P<zone>[^/]+)"
_INSTANCE = rf"{_ZONE}/instances/(?P<name>[^/]+)"
_GROUP = rf"{_ZONE}/instanceGroups/(?P<group>[^/]+)"
ROUTES = [
    (rf"{_ZONE}/operations/(?P<name>[^/]+)", "GET", "get_zone_operation"),
    (rf"{_ZONE}/operations/(?P<name>[^/]+)/wait", "POST", "post_zone_operation_wait"),
    (r"global/operations/(?P<name>[^/]+)", "GET", "get_global_operation"),
    (r"global/operations/(?P<name>[^/]+)/wait", "POST", "post_global_operation_wait"),
    (r"global/images/family/(?P<family>[^/]+)", "GET", "get_image_family"),
    (r"global/images/(?P<name>[^/]+)", "GET", "get_image"),
    (r"global/images/(?P<name>[^/]+)", "DELETE", "delete_image"),
    (r"global/images", "GET", "get_images"),
    (r"global/images", "POST", "post_images"),
    (r"aggregated/instances", "GET", "get_aggregated_instances"),
    (rf"{_ZONE}/instances", "POST", "post_instances"),
    (_INSTANCE, "GET", "get_instance"),
    (_INSTANCE, "DELETE", "delete_instance"),
    (rf"{_INSTANCE}/getGuestAttributes", "GET", "get_guest_attributes"),
    (rf"{_INSTANCE}/setLabels", "POST", "post_instance_set_labels"),
    (rf"{_GROUP}/addInstances", "POST", "post_group_add"),
    (rf"{_GROUP}/removeInstances", "POST", "post_group_remove"),
    (rf"{_GROUP}/listInstances", "POST", "post_group_list"),
]


def error(status: int, message: str, reason: str | None = None) -> dict[str, Any]:
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


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


def page(items: list[dict[str, Any]], query: dict[str, str], kind: str) -> dict[str, Any]:
    size = int(query.get("maxResults", "500"))
    start = int(query.get("pageToken", "0") or 0)
    page: dict[str, Any] = {"kind": kind, "items": items[start : start + size]}
    if start + size < len(items):
        page["nextPageToken"] = str(start + size)
    return page
