"""The GCP adapter: images, instances and unmanaged instance groups through google-cloud-compute.

Imported only when an app uses GCP (the SDK costs seconds and ~150 MB to import). Clients use
the REST transport; operations are waited on through zone/global operations clients built with
the same endpoint and credentials, never ``ExtendedOperation.result()``, which polls Google's
public endpoint whatever the client was given. Scripts run at boot from the startup script and
report each step through guest attributes, which ``run_script`` waits for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import google.auth
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry, if_exception_type
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from providers.base import (
    TAG_KEY,
    TAG_SOURCE,
    VERSION_TAG_PREFIX,
    AuthError,
    Capacity,
    Image,
    InvalidRequest,
    LaunchRequest,
    LimitExceeded,
    NotFound,
    ProviderError,
    ProviderTimeout,
    Script,
    ScriptResult,
    Server,
    ServerState,
    Target,
    Throttled,
)
from providers.codec import describe_versions
from providers.gcp_codec import (
    LABELS,
    image_from,
    label_value,
    server_from,
    startup_script,
    version_labels,
)

OPERATION_ERRORS: dict[str, type[ProviderError]] = {
    "ZONE_RESOURCE_POOL_EXHAUSTED": Capacity,
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS": Capacity,
    "RESOURCE_POOL_EXHAUSTED": Capacity,
    "QUOTA_EXCEEDED": LimitExceeded,
    "RESOURCE_NOT_FOUND": NotFound,
    "RATE_LIMIT_EXCEEDED": Throttled,
}
# operations.wait answers within two minutes on Compute Engine: its call may take that long.
WAIT_CALL_SECONDS = 150.0
# Only the call is retried, with the same requestId, so a retry never creates twice.
TRANSIENT = Retry(
    predicate=if_exception_type(
        gexc.TooManyRequests, gexc.ServiceUnavailable, gexc.InternalServerError, gexc.BadGateway
    ),
    initial=0.2,
    maximum=5.0,
    multiplier=2.0,
    timeout=60.0,
)


# Answers that mean the membership change already holds (e.g. the add went through before a
# crash and its requestId has since been forgotten): success, not an error.
ALREADY_MEMBER = ("memberAlreadyExists", "is already a member of")
NOT_MEMBER = ("memberNotFound", "is not a member of")


@contextmanager
def _already_done(answers: tuple[str, ...]) -> Iterator[list[bool]]:
    """Yields a flag list that is [True] when the API said the change already holds."""
    held: list[bool] = []
    try:
        yield held
    except gexc.BadRequest as exc:
        said = f"{exc.message} {exc.errors}"
        if not any(answer in said for answer in answers):
            raise
        held.append(True)


@contextmanager
def _translate(action: str) -> Iterator[None]:
    """The one place google.api_core errors become the port's errors."""
    try:
        yield
    except gexc.NotFound as exc:
        raise NotFound(f"{action}: {exc.message}") from exc
    except gexc.TooManyRequests as exc:
        raise Throttled(f"{action}: {exc.message}") from exc
    except (gexc.Unauthorized, gexc.Forbidden) as exc:
        raise AuthError(f"{action}: {exc.message}") from exc
    except gexc.BadRequest as exc:
        raise InvalidRequest(f"{action}: {exc.message}") from exc
    except gexc.RetryError as exc:
        raise Throttled(f"{action}: gave up retrying: {exc.cause}") from exc
    except gexc.GoogleAPIError as exc:
        raise ProviderError(f"{action}: {exc}") from exc
    except requests.Timeout as exc:
        raise ProviderTimeout(f"{action}: no answer in time ({exc})") from exc
    except requests.RequestException as exc:
        raise ProviderError(f"{action}: {exc}") from exc


class GcpProvider:
    name = "gcp"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        endpoint = settings.get("api_endpoint")
        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        if settings.get("credentials") == "anonymous":
            credentials: Any = AnonymousCredentials()  # type: ignore[no-untyped-call]

            project = settings.get("project")
        else:
            credentials, found_project = google.auth.default()
            project = settings.get("project") or found_project
        if not project:
            raise AuthError("no GCP project: set providers.gcp.project")
        self.project = str(project)
        self.zone = str(settings.get("zone", "us-central1-a"))
        common = {"credentials": credentials, "transport": "rest", "client_options": options}
        self.images = compute_v1.ImagesClient(**common)
        self.instances = compute_v1.InstancesClient(**common)
        self.groups = compute_v1.InstanceGroupsClient(**common)
        self.zone_operations = compute_v1.ZoneOperationsClient(**common)
        self.global_operations = compute_v1.GlobalOperationsClient(**common)
        self.poll_seconds = float(settings.get("poll_seconds", 5))
        self.wait_seconds = float(settings.get("wait_seconds", 600))
        # Every call has an explicit timeout (connection and answer), so an API that accepts
        # connections but never answers cannot hold a step, a scan or a shutdown for minutes.
        self.timeout = float(settings.get("read_timeout", 20))

    # operations -------------------------------------------------------------------------

    def _wait(self, operation: Any, action: str, zone: str | None = None) -> None:
        deadline = time.monotonic() + self.wait_seconds
        while operation.status != compute_v1.Operation.Status.DONE:
            if time.monotonic() > deadline:
                raise ProviderTimeout(f"{action}: operation {operation.name} is still running")
            with _translate(f"{action}: wait"):
                if zone:
                    operation = self.zone_operations.wait(
                        project=self.project,
                        zone=zone,
                        operation=operation.name,
                        retry=TRANSIENT,
                        timeout=WAIT_CALL_SECONDS,
                    )
                else:
                    operation = self.global_operations.wait(
                        project=self.project,
                        operation=operation.name,
                        retry=TRANSIENT,
                        timeout=WAIT_CALL_SECONDS,
                    )
            if operation.status != compute_v1.Operation.Status.DONE:
                time.sleep(self.poll_seconds)
        errors = list(operation.error.errors) if operation.error else []
        if errors:
            code = errors[0].code
            kind = OPERATION_ERRORS.get(code, ProviderError)
            raise kind(f"{action}: {code}: {errors[0].message}")

    @staticmethod
    def _request_id(key: str, verb: str) -> str:
        # GCE wants a UUID; the same key and verb always give the same one.
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"byoi:{verb}:{key}"))

    # images -----------------------------------------------------------------------------

    def list_images(self, family: str | None = None) -> list[Image]:
        request = compute_v1.ListImagesRequest(project=self.project)
        if family:
            request.filter = f'family = "{family}"'
        with _translate("list images"):
            return [
                image_from(i)
                for i in self.images.list(request=request, retry=TRANSIENT, timeout=self.timeout)
            ]

    def resolve_image(self, ref: str) -> Image:
        name = ref.rsplit("/", 1)[-1]
        with _translate(f"find image {ref}"):
            if ref.startswith("family:"):
                found = self.images.get_from_family(
                    project=self.project,
                    family=ref.removeprefix("family:"),
                    retry=TRANSIENT,
                    timeout=self.timeout,
                )
            else:
                found = self.images.get(
                    project=self.project, image=name, retry=TRANSIENT, timeout=self.timeout
                )
        return image_from(found)

    def snapshot(
        self,
        server: Server,
        *,
        name: str,
        family: str | None,
        versions: Mapping[str, str],
        tags: Mapping[str, str] | None = None,
    ) -> Image:
        zone, instance_name = server.id.split("/", 1)
        with _translate("read instance"):
            instance = self.instances.get(
                project=self.project,
                zone=zone,
                instance=instance_name,
                retry=TRANSIENT,
                timeout=self.timeout,
            )
        labels = version_labels(versions)
        labels.update(
            {LABELS.get(k, label_value(k)): label_value(v) for k, v in (tags or {}).items()}
        )
        labels[label_value(TAG_SOURCE)] = label_value(instance_name)
        image = compute_v1.Image(
            name=name,
            source_disk=instance.disks[0].source,
            family=family or None,
            labels=labels,
            description=describe_versions(versions),
        )

        with _translate("create image"):
            operation = self.images.insert_unary(
                request=compute_v1.InsertImageRequest(
                    project=self.project,
                    image_resource=image,
                    force_create=True,
                    request_id=self._request_id(name, "image"),
                ),
                retry=TRANSIENT,
                timeout=self.timeout,
            )
        self._wait(operation, "create image")
        return self.resolve_image(name)

    def delete_image(self, image: Image) -> None:
        try:
            with _translate(f"delete image {image.id}"):
                operation = self.images.delete_unary(
                    request=compute_v1.DeleteImageRequest(
                        project=self.project,
                        image=image.id,
                        request_id=self._request_id(image.id, "delete-image"),
                    ),
                    retry=TRANSIENT,
                )
            self._wait(operation, f"delete image {image.id}")
        except NotFound:
            return

    # servers ----------------------------------------------------------------------------

    def list_servers(self, tags: Mapping[str, str]) -> list[Server]:
        clauses = [f'(labels.{LABELS.get(k, k)} = "{v}")' for k, v in tags.items()]
        request = compute_v1.AggregatedListInstancesRequest(
            project=self.project, filter=" ".join(clauses)
        )
        found: list[Server] = []
        with _translate("list instances"):
            for scope, listing in self.instances.aggregated_list(
                request=request, retry=TRANSIENT, timeout=self.timeout
            ):
                zone = scope.rsplit("/", 1)[-1]
                found.extend(server_from(i, zone) for i in listing.instances)
        return [s for s in found if s.state != ServerState.TERMINATED]

    def launch(self, request: LaunchRequest) -> Server:
        zone = request.spec.zone or request.spec.region or self.zone
        if zone.count("-") < 2:  # a region such as europe-west1: use the configured zone
            zone = self.zone
        existing = self._get(zone, request.key)
        if existing is None:
            with _translate("create instance"):
                operation = self.instances.insert_unary(
                    request=compute_v1.InsertInstanceRequest(
                        project=self.project,
                        zone=zone,
                        instance_resource=self._instance(request, zone),
                        request_id=self._request_id(request.key, "insert"),
                    ),
                    retry=TRANSIENT,
                    timeout=self.timeout,
                )
            self._wait(operation, "create instance", zone)
        return self._wait_running(zone, request.key)

    def _instance(self, request: LaunchRequest, zone: str) -> Any:
        spec = request.spec
        labels = {LABELS.get(k, label_value(k)): label_value(v) for k, v in request.tags.items()}
        labels[LABELS[TAG_KEY]] = request.key
        labels["byoi-image"] = label_value(request.image.id)
        image_path = f"projects/{self.project}/global/images/{request.image.id}"
        disk = compute_v1.AttachedDisk(
            boot=True,
            auto_delete=True,
            initialize_params=compute_v1.AttachedDiskInitializeParams(
                source_image=image_path, disk_size_gb=spec.root_disk_gb or None
            ),
        )
        network = compute_v1.NetworkInterface(
            network=self.settings.get("network", "global/networks/default"),
            subnetwork=spec.subnet or self.settings.get("subnetwork") or None,
        )
        metadata = compute_v1.Metadata(
            items=[
                compute_v1.Items(
                    key="startup-script", value=startup_script(request.scripts, request.key)
                ),
                compute_v1.Items(key="enable-guest-attributes", value="TRUE"),
                compute_v1.Items(key="byoi-steps", value=",".join(s.name for s in request.scripts)),
            ]
        )
        instance = compute_v1.Instance(
            name=request.key,
            machine_type=f"zones/{zone}/machineTypes/"
            f"{spec.size or self.settings.get('machine_type', 'e2-small')}",
            labels=labels,
            disks=[disk],
            network_interfaces=[network],
            metadata=metadata,
        )
        if self.settings.get("service_account"):
            instance.service_accounts = [
                compute_v1.ServiceAccount(
                    email=self.settings["service_account"],
                    scopes=["https://www.googleapis.com/auth/cloud-platform"],
                )
            ]
        return instance

    def _get(self, zone: str, name: str) -> Any | None:
        try:
            with _translate("read instance"):
                return self.instances.get(
                    project=self.project,
                    zone=zone,
                    instance=name,
                    retry=TRANSIENT,
                    timeout=self.timeout,
                )
        except NotFound:
            return None

    def _wait_running(self, zone: str, name: str) -> Server:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            instance = self._get(zone, name)
            if instance is None:
                raise NotFound(f"instance {name} vanished while starting")
            server = server_from(instance, zone)
            if server.state == ServerState.RUNNING:
                return server
            if time.monotonic() > deadline:
                raise ProviderTimeout(f"instance {name} is still {instance.status}")
            time.sleep(self.poll_seconds)

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        """Wait for the step the startup script runs to report its exit code."""
        zone, name = server.id.split("/", 1)
        deadline = time.monotonic() + script.timeout_seconds + self.wait_seconds
        while True:
            found = self._attributes(zone, name)
            if f"{script.name}-exit" in found:
                code = found[f"{script.name}-exit"]
                exit_code = int(code) if code.lstrip("-").isdigit() else -1
                return ScriptResult(exit_code, found.get(f"{script.name}-output", ""))
            if time.monotonic() > deadline:
                raise ProviderTimeout(
                    f"{script.name} reported nothing within {script.timeout_seconds:g}s"
                )
            time.sleep(self.poll_seconds)

    def _attributes(self, zone: str, name: str) -> dict[str, str]:
        try:
            with _translate("read guest attributes"):
                found = self.instances.get_guest_attributes(
                    request=compute_v1.GetGuestAttributesInstanceRequest(
                        project=self.project, zone=zone, instance=name, query_path="byoi/"
                    ),
                    retry=TRANSIENT,
                    timeout=self.timeout,
                )
        except NotFound:
            return {}  # nothing reported yet
        items = found.query_value.items if found.query_value else []
        return {item.key: item.value for item in items}

    def tag_server(self, server: Server, tags: Mapping[str, str]) -> None:
        zone, name = server.id.split("/", 1)
        instance = self._get(zone, name)
        if instance is None:
            raise NotFound(f"instance {name} does not exist")
        labels = dict(instance.labels)
        for key, value in tags.items():
            if key.startswith(VERSION_TAG_PREFIX):
                labels.update(version_labels({key.removeprefix(VERSION_TAG_PREFIX): value}))
            else:
                labels[LABELS.get(key, label_value(key))] = label_value(value)
        with _translate(f"label {name}"):
            operation = self.instances.set_labels_unary(
                request=compute_v1.SetLabelsInstanceRequest(
                    project=self.project,
                    zone=zone,
                    instance=name,
                    instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
                        label_fingerprint=instance.label_fingerprint, labels=labels
                    ),
                ),
                retry=TRANSIENT,
            )
        self._wait(operation, f"label {name}", zone)

    def terminate(self, server: Server) -> None:
        zone, name = server.id.split("/", 1)
        try:
            with _translate("delete instance"):
                operation = self.instances.delete_unary(
                    request=compute_v1.DeleteInstanceRequest(
                        project=self.project,
                        zone=zone,
                        instance=name,
                        request_id=self._request_id(name, "delete"),
                    ),
                    retry=TRANSIENT,
                    timeout=self.timeout,
                )
            self._wait(operation, "delete instance", zone)
        except NotFound:
            return

    # targets ----------------------------------------------------------------------------

    def _group_zone(self, server: Server | None = None) -> str:
        return str(
            self.settings.get("instance_group_zone")
            or (server.id.split("/", 1)[0] if server else self.zone)
        )

    def _reference(self, server: Server) -> Any:
        zone, name = server.id.split("/", 1)
        return compute_v1.InstanceReference(
            instance=f"projects/{self.project}/zones/{zone}/instances/{name}"
        )

    def register(self, server: Server, target: Target) -> None:
        zone = self._group_zone(server)
        request = compute_v1.InstanceGroupsAddInstancesRequest(instances=[self._reference(server)])
        with _translate(f"add to {target.name}"), _already_done(ALREADY_MEMBER) as held:
            operation = self.groups.add_instances_unary(
                request=compute_v1.AddInstancesInstanceGroupRequest(
                    project=self.project,
                    zone=zone,
                    instance_group=target.name,
                    instance_groups_add_instances_request_resource=request,
                    request_id=self._request_id(f"{server.id}:{target.name}", "add"),
                ),
                retry=TRANSIENT,
                timeout=self.timeout,
            )
        if not held:
            self._wait(operation, f"add to {target.name}", zone)

    def deregister(self, server: Server, target: Target) -> None:
        if server.id not in self.target_members(target, self._group_zone(server)):
            return
        zone = self._group_zone(server)
        request = compute_v1.InstanceGroupsRemoveInstancesRequest(
            instances=[self._reference(server)]
        )
        with _translate(f"remove from {target.name}"), _already_done(NOT_MEMBER) as held:
            operation = self.groups.remove_instances_unary(
                request=compute_v1.RemoveInstancesInstanceGroupRequest(
                    project=self.project,
                    zone=zone,
                    instance_group=target.name,
                    instance_groups_remove_instances_request_resource=request,
                    request_id=self._request_id(f"{server.id}:{target.name}", "remove"),
                ),
                retry=TRANSIENT,
                timeout=self.timeout,
            )
        if held:
            return
        self._wait(operation, f"remove from {target.name}", zone)
        if target.drain_seconds > 0:
            time.sleep(min(target.drain_seconds, self.wait_seconds))

    def target_members(self, target: Target, zone: str | None = None) -> list[str]:
        zone = zone or self._group_zone()
        with _translate(f"read {target.name}"):
            listing = self.groups.list_instances(
                project=self.project,
                zone=zone,
                instance_group=target.name,
                instance_groups_list_instances_request_resource=(
                    compute_v1.InstanceGroupsListInstancesRequest()
                ),
                retry=TRANSIENT,
                timeout=self.timeout,
            )
            urls = [item.instance for item in listing]
        members = []
        for url in urls:
            parts = url.split("/")
            members.append(f"{parts[parts.index('zones') + 1]}/{parts[-1]}")
        return sorted(members)
