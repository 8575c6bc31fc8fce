"""The GCP adapter: images, instances and unmanaged instance groups through google-cloud-compute.

Imported only when an app uses GCP (the SDK costs seconds and ~150 MB to import). Clients use
the REST transport; operations are waited on through zone/global operations clients built with
the same endpoint and credentials, never ``ExtendedOperation.result()``, which polls Google's
public endpoint whatever the client was given. Scripts run at boot from the startup script and
report each step through guest attributes, which ``run_script`` waits for. The resources it
creates, its retries and its error translation are in gcp_requests.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import google.auth
import google.auth.exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from providers.base import (
    VERSION_TAG_PREFIX,
    AlreadyExists,
    AuthError,
    Image,
    LaunchRequest,
    NotFound,
    ProviderError,
    ProviderTimeout,
    Script,
    ScriptResult,
    Server,
    ServerState,
    Target,
    outcome,
)
from providers.calls import Gate, chunks, pooled, rounds
from providers.gcp_codec import LABELS, image_from, label_value, server_from, version_labels
from providers.gcp_requests import (
    ALREADY_MEMBER,
    NOT_MEMBER,
    OPERATION_ERRORS,
    TRANSIENT,
    WAIT_CALL_SECONDS,
    already_done,
    image_resource,
    instance_resource,
    translate,
)

MEMBERS_PER_CALL = 500
"""Instances named in one addInstances call."""


class GcpProvider:
    name = "gcp"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self.gate = Gate()  # its API's requests in flight, whatever calls for many run at once
        endpoint = settings.get("api_endpoint")
        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        if settings.get("credentials") == "anonymous":
            credentials: Any = AnonymousCredentials()  # type: ignore[no-untyped-call]

            project = settings.get("project")
        else:
            try:
                credentials, found_project = google.auth.default()
            except google.auth.exceptions.DefaultCredentialsError:
                raise AuthError(
                    "no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS to a "
                    "service account key file, or run `gcloud auth application-default login`"
                ) from None
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
            with translate(f"{action}: wait"):
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
        _raise_for(operation, action)

    def _operate(
        self,
        what: str,
        call: Callable[..., Any],
        request: Any,
        zone: str | None = None,
        already: tuple[str, ...] = (),
    ) -> bool:
        """Start an operation with ``call`` and wait until it is done; False (and no wait) when
        the API answers one of ``already``: the change holds already."""
        with translate(what), already_done(already) as held:
            operation = call(request=request, retry=TRANSIENT, timeout=self.timeout)
        if held:
            return False
        self._wait(operation, what, zone)
        return True

    @staticmethod
    def _request_id(key: str, verb: str) -> str:
        # GCE wants a UUID; the same key and verb always give the same one.
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"byoi:{verb}:{key}"))

    # images -----------------------------------------------------------------------------

    def list_images(self, family: str | None = None) -> list[Image]:
        request = compute_v1.ListImagesRequest(project=self.project)
        if family:
            request.filter = f'family = "{family}"'
        with translate("list images"):
            return [
                image_from(i)
                for i in self.images.list(request=request, retry=TRANSIENT, timeout=self.timeout)
            ]

    def resolve_image(self, ref: str) -> Image:
        name = ref.rsplit("/", 1)[-1]
        with translate(f"find image {ref}"):
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
        zone, instance_name = _where(server.id)
        with translate("read instance"):
            instance = self.instances.get(
                project=self.project,
                zone=zone,
                instance=instance_name,
                retry=TRANSIENT,
                timeout=self.timeout,
            )
        image = image_resource(
            name, instance.disks[0].source, instance_name, family, versions, tags or {}
        )
        self._operate(
            "create image",
            self.images.insert_unary,
            compute_v1.InsertImageRequest(
                project=self.project,
                image_resource=image,
                force_create=True,
                request_id=self._request_id(name, "image"),
            ),
        )
        return self.resolve_image(name)

    def delete_image(self, image: Image) -> None:
        request = compute_v1.DeleteImageRequest(
            project=self.project,
            image=image.id,
            request_id=self._request_id(image.id, "delete-image"),
        )
        try:
            self._operate(f"delete image {image.id}", self.images.delete_unary, request)
        except NotFound:
            return

    # servers ----------------------------------------------------------------------------

    def list_servers(self, tags: Mapping[str, str]) -> list[Server]:
        clauses = [f'(labels.{LABELS.get(k, k)} = "{v}")' for k, v in tags.items()]
        request = compute_v1.AggregatedListInstancesRequest(
            project=self.project, filter=" ".join(clauses)
        )
        found: list[Server] = []
        with translate("list instances"):
            for scope, listing in self.instances.aggregated_list(
                request=request, retry=TRANSIENT, timeout=self.timeout
            ):
                zone = scope.rsplit("/", 1)[-1]
                found.extend(server_from(i, zone) for i in listing.instances)
        return [s for s in found if s.state != ServerState.TERMINATED]

    def launch(self, request: LaunchRequest) -> Server:
        return outcome(self.launch_all([request])[0])

    def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
        """Each request's insert sent (or its running instance found), a few at a time; then
        one wait for all, in rounds: each insert's operation until done, each instance until
        it runs. A thousand servers need a few threads, not one waiting per server."""
        unique = list({r.key: r for r in requests}.values())  # a key is one instance
        begun = pooled(self._insert, unique, self.gate)
        starting = [b for b in begun if isinstance(b, _Pending)]
        waits = rounds(
            self._started,
            starting,
            late=self._late_start,
            poll_seconds=self.poll_seconds,
            gate=self.gate,
        )
        waited = dict(zip([s.name for s in starting], waits, strict=True))
        outcomes = {
            r.key: waited[b.name] if isinstance(b, _Pending) else b
            for r, b in zip(unique, begun, strict=True)
        }
        return [outcomes[r.key] for r in requests]

    def _insert(self, request: LaunchRequest) -> _Pending:
        zone = request.spec.zone or request.spec.region or self.zone
        if zone.count("-") < 2:  # a region such as europe-west1: use the configured zone
            zone = self.zone
        existing = self._get(zone, request.key)
        if existing is not None and server_from(existing, zone).state == ServerState.RUNNING:
            return _Pending(zone, request.key, None, "create instance")
        # New, or left starting by a crash: the same request id gives back the first insert's
        # operation (GCE keeps it an hour), so waiting on it again is idempotent.
        insert = compute_v1.InsertInstanceRequest(
            project=self.project,
            zone=zone,
            instance_resource=instance_resource(request, zone, self.project, self.settings),
            request_id=self._request_id(request.key, "insert"),
        )
        try:
            operation = self._send_insert(insert)
        except AlreadyExists:  # made by an older request: it starts on its own
            if existing is None:
                raise
            operation = None
        return _Pending(zone, request.key, operation, "create instance")

    def _send_insert(self, insert: Any) -> Any:
        """The insert's operation; asked once more if the first answer came too late (its
        request id makes the second the same insert)."""
        for attempt in (1, 2):
            try:
                with translate("create instance"):
                    return self.instances.insert_unary(
                        request=insert, retry=TRANSIENT, timeout=self.timeout
                    )
            except ProviderTimeout:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _started(self, starting: _Pending) -> Server | None:
        """The instance once it runs; None while its insert or its start is under way."""
        if not self._finished(starting):
            return None
        instance = self._get(starting.zone, starting.name)
        if instance is None:
            raise NotFound(f"instance {starting.name} vanished while starting")
        server = server_from(instance, starting.zone)
        starting.status = instance.status
        return server if server.state == ServerState.RUNNING else None

    def _late_start(self, starting: _Pending, waited: float) -> ProviderError | None:
        if waited <= self.wait_seconds:
            return None
        if starting.operation is not None:
            return ProviderTimeout(
                f"create instance: operation {starting.operation.name} is still running"
            )
        return ProviderTimeout(f"instance {starting.name} is still {starting.status}")

    def _get(self, zone: str, name: str) -> Any | None:
        try:
            with translate("read instance"):
                return self.instances.get(
                    project=self.project,
                    zone=zone,
                    instance=name,
                    retry=TRANSIENT,
                    timeout=self.timeout,
                )
        except NotFound:
            return None

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        return outcome(self.run_script_all([(server, script)])[0])

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        """Wait for each step the startup script runs to report its exit code: rounds of
        reads of the servers still running it, a few at a time."""

        def late(job: tuple[Server, Script], waited: float) -> ProviderError | None:
            script = job[1]
            if waited <= script.timeout_seconds + self.wait_seconds:
                return None
            return ProviderTimeout(
                f"{script.name} reported nothing within {script.timeout_seconds:g}s"
            )

        return rounds(self._report, jobs, late=late, poll_seconds=self.poll_seconds, gate=self.gate)

    def _report(self, job: tuple[Server, Script]) -> ScriptResult | None:
        server, script = job
        zone, name = _where(server.id)
        found = self._attributes(zone, name)
        if f"{script.name}-exit" not in found:
            return None
        code = found[f"{script.name}-exit"]
        exit_code = int(code) if code.lstrip("-").isdigit() else -1
        return ScriptResult(exit_code, found.get(f"{script.name}-output", ""))

    def _attributes(self, zone: str, name: str) -> dict[str, str]:
        try:
            with translate("read guest attributes"):
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
        outcome(self.tag_all([(server, tags)])[0])

    def tag_all(
        self, tagged: Sequence[tuple[Server, Mapping[str, str]]]
    ) -> list[ProviderError | None]:
        """Each server's labels set, a few requests at a time, then their operations waited
        for in rounds."""
        merged: dict[str, tuple[Server, dict[str, str]]] = {}
        for server, tags in tagged:  # a server named twice: one change, its tags merged
            merged.setdefault(server.id, (server, {}))[1].update(tags)
        unique = list(merged.values())
        sent = pooled(lambda pair: self._label(*pair), unique, self.gate)

        def done(index: int) -> bool | None:
            pending = sent[index]
            if isinstance(pending, ProviderError):
                raise pending
            return self._finished(pending) or None

        def late(index: int, waited: float) -> ProviderError | None:
            if waited <= self.wait_seconds:
                return None
            return ProviderTimeout(f"label {unique[index][0].id}: still running")

        answers = rounds(
            done, range(len(unique)), late=late, poll_seconds=self.poll_seconds, gate=self.gate
        )
        found = {
            server.id: a if isinstance(a, ProviderError) else None
            for (server, _), a in zip(unique, answers, strict=True)
        }
        return [found[server.id] for server, _ in tagged]

    def _label(self, server: Server, tags: Mapping[str, str]) -> _Pending:
        zone, name = _where(server.id)
        instance = self._get(zone, name)
        if instance is None:
            raise NotFound(f"instance {name} does not exist")
        labels = dict(instance.labels)
        for key, value in tags.items():
            if key.startswith(VERSION_TAG_PREFIX):
                labels.update(version_labels({key.removeprefix(VERSION_TAG_PREFIX): value}))
            else:
                labels[LABELS.get(key, label_value(key))] = label_value(value)
        request = compute_v1.SetLabelsInstanceRequest(
            project=self.project,
            zone=zone,
            instance=name,
            instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
                label_fingerprint=instance.label_fingerprint, labels=labels
            ),
            # A retried call (a dropped connection) is the same change, not a second one.
            request_id=self._request_id(
                f"{server.id}:{instance.label_fingerprint}:{sorted(labels.items())}", "labels"
            ),
        )
        with translate(f"label {name}"):
            operation = self.instances.set_labels_unary(
                request=request, retry=TRANSIENT, timeout=self.timeout
            )
        return _Pending(zone, name, operation, f"label {name}")

    def _finished(self, pending: _Pending) -> bool:
        """Whether the pending operation is done (its error raised); polled, not waited on."""
        if pending.operation is None:
            return True
        if pending.operation.status != compute_v1.Operation.Status.DONE:
            with translate(f"{pending.action}: wait"):
                pending.operation = self.zone_operations.get(
                    project=self.project,
                    zone=pending.zone,
                    operation=pending.operation.name,
                    retry=TRANSIENT,
                    timeout=self.timeout,
                )
            if pending.operation.status != compute_v1.Operation.Status.DONE:
                return False
        _raise_for(pending.operation, pending.action)
        pending.operation = None
        return True

    def terminate(self, server: Server) -> None:
        zone, name = _where(server.id)
        request = compute_v1.DeleteInstanceRequest(
            project=self.project,
            zone=zone,
            instance=name,
            request_id=self._request_id(name, "delete"),
        )
        try:
            self._operate("delete instance", self.instances.delete_unary, request, zone)
        except NotFound:
            return

    # targets ----------------------------------------------------------------------------

    def _group_zone(self, server: Server | None = None) -> str:
        return str(
            self.settings.get("instance_group_zone")
            or (server.id.split("/", 1)[0] if server else self.zone)
        )

    def register(self, server: Server, target: Target) -> None:
        outcome(self.register_all([server], target)[0])

    def register_all(self, servers: Sequence[Server], target: Target) -> list[ProviderError | None]:
        """One addInstances for the servers the target's group does not hold yet, per group
        zone; if the API refuses it, each server is added alone, so only the refused fail."""
        refused: dict[str, ProviderError] = {}
        zones: dict[str, list[Server]] = {}
        for server in {s.id: s for s in servers}.values():
            zones.setdefault(self._group_zone(server), []).append(server)
        for zone, members in zones.items():
            try:
                held = set(self.target_members(target, zone))
            except ProviderError:  # unknown: add them all; members already in are told apart
                held = set()
            wanted = [s for s in members if s.id not in held]
            for chunk in chunks(wanted, MEMBERS_PER_CALL):
                try:
                    self._change_group(chunk, target, zone, add=True)
                except ProviderError as exc:
                    if len(chunk) == 1:
                        refused[chunk[0].id] = exc
                        continue
                    refused.update(self._add_alone(chunk, target, zone))
        return [refused.get(s.id) for s in servers]

    def _add_alone(
        self, servers: list[Server], target: Target, zone: str
    ) -> dict[str, ProviderError]:
        """Which of ``servers`` the API refused: each added alone, a few at a time."""

        def add(server: Server) -> bool:
            return self._change_group([server], target, zone, add=True)

        added = pooled(add, servers, self.gate)
        return {
            s.id: a for s, a in zip(servers, added, strict=True) if isinstance(a, ProviderError)
        }

    def deregister(self, server: Server, target: Target) -> None:
        zone = self._group_zone(server)
        if server.id not in self.target_members(target, zone):
            return
        if self._change_group([server], target, zone, add=False) and target.drain_seconds > 0:
            time.sleep(min(target.drain_seconds, self.wait_seconds))

    def _change_group(self, servers: list[Server], target: Target, zone: str, *, add: bool) -> bool:
        """Add ``servers`` to the target's instance group in ``zone`` or remove them; False
        when the API answered that the change already holds (no operation to wait for)."""
        verb, action = ("add", "add to") if add else ("remove", "remove from")
        urls = [
            f"projects/{self.project}/zones/{s.id.replace('/', '/instances/', 1)}" for s in servers
        ]
        body = {"instances": [{"instance": url} for url in urls]}
        request = {
            "project": self.project,
            "zone": zone,
            "instance_group": target.name,
            f"instance_groups_{verb}_instances_request_resource": body,
            "request_id": self._request_id(
                f"{','.join(s.id for s in servers)}:{target.name}", verb
            ),
        }
        call = self.groups.add_instances_unary if add else self.groups.remove_instances_unary
        # The API refuses the whole call for one instance already in (or not in) the group:
        # that the change holds is known only of a call for one.
        held = (ALREADY_MEMBER if add else NOT_MEMBER) if len(servers) == 1 else ()
        return self._operate(f"{action} {target.name}", call, request, zone, held)

    def target_members(self, target: Target, zone: str | None = None) -> list[str]:
        zone = zone or self._group_zone()
        with translate(f"read {target.name}"):
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


@dataclass
class _Pending:
    """An operation on an instance that was sent and is waited for in rounds."""

    zone: str
    name: str
    operation: Any | None
    action: str
    status: str = "unknown"
    """The instance's status when last read."""


def _raise_for(operation: Any, action: str) -> None:
    """The error of a finished operation, as a ``ProviderError``."""
    errors = list(operation.error.errors) if operation.error else []
    if errors:
        code = errors[0].code
        kind = OPERATION_ERRORS.get(code, ProviderError)
        raise kind(f"{action}: {code}: {errors[0].message}")


def _where(server_id: str) -> tuple[str, str]:
    """A server id's zone and instance name (``zone/name``)."""
    zone, slash, name = server_id.partition("/")
    if not slash:
        raise NotFound(f"instance {server_id} does not exist (a GCP server id is zone/name)")
    return zone, name
