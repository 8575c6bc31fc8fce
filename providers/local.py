"""The local provider: images and servers are directory trees on this machine.

It does the real work (copy, scrub, deploy, register) on the filesystem, so the demo and the
tests see what each step did. It is also the reference implementation of the port.

Layout under ``root``::

    images/<id>/image.json   metadata (name, family, versions, created_at, state)
    images/<id>/rootfs/      the image's file tree
    servers/<id>/server.json metadata (tags, image, state)
    servers/<id>/rootfs/     the server's file tree
    servers/index.db         live servers by tag (providers/local_index.py), so a listing
                             costs what it returns, not the whole directory
    targets/<name>.json      the local load balancer: which servers receive traffic
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from providers.base import (
    TAG_KEY,
    Image,
    ImageState,
    InvalidRequest,
    KeyMatch,
    LaunchRequest,
    NotFound,
    ProviderError,
    ProviderTimeout,
    RegistrationFailed,
    Script,
    ScriptResult,
    Server,
    ServerState,
    Target,
    each,
    newest_usable,
    outcome,
)
from providers.local_index import ServerIndex

Clock = Callable[[], datetime]
OUTPUT_BYTES = 1 << 20
"""The end of a script's output that is kept (a script may print gigabytes)."""
_SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _check_name(kind: str, value: str) -> str:
    if not value or not set(value.lower()) <= _SAFE_NAME or value.startswith("."):
        raise InvalidRequest(f"{kind} {value!r} may only use letters, digits, '-', '_' and '.'")
    return value


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


class LocalProvider:
    name = "local"

    def __init__(self, root: Path, *, clock: Clock = _utcnow) -> None:
        self.root = Path(root).resolve()
        self._clock = clock
        self._lock = threading.Lock()
        for sub in ("images", "servers", "targets"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._index = ServerIndex(self.root / "servers", self._scan_servers)

    def close(self) -> None:
        self._index.close()

    # images -----------------------------------------------------------------------------

    def create_image(
        self,
        name: str,
        files: Mapping[str, str],
        *,
        family: str | None = None,
        versions: Mapping[str, str] | None = None,
        created_at: datetime | None = None,
        state: ImageState = ImageState.READY,
    ) -> Image:
        """Seed an image from a map of absolute paths to contents (demo and tests)."""
        _check_name("image name", name)
        image_id = f"img-{uuid.uuid4().hex[:12]}"
        staging = self.root / "images" / f".{image_id}.tmp"
        for path, content in files.items():
            target = staging / "rootfs" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            if content.startswith("#!"):
                target.chmod(0o755)  # a script is seeded runnable, as on a real image
        (staging / "rootfs").mkdir(parents=True, exist_ok=True)
        return self._publish_image(
            staging, image_id, name, family, versions or {}, created_at, state
        )

    def _publish_image(
        self,
        staging: Path,
        image_id: str,
        name: str,
        family: str | None,
        versions: Mapping[str, str],
        created_at: datetime | None,
        state: ImageState,
        tags: Mapping[str, str] | None = None,
    ) -> Image:
        meta = {
            "id": image_id,
            "name": name,
            "family": family,
            "versions": dict(versions),
            "tags": dict(tags or {}),
            "created_at": (created_at or self._clock()).isoformat(),
            "state": state.value,
            "deprecated_at": None,
        }
        _write_json(staging / "image.json", meta)
        os.replace(staging, self.root / "images" / image_id)
        return _image_from(meta)

    def import_tree(
        self, directory: Path, name: str, *, family: str | None, state: ImageState
    ) -> Image:
        """A copy of ``directory`` becomes an image's tree; its versions are recorded once
        measured (``record_versions``), never taken from the caller."""
        _check_name("image name", name)
        if not directory.is_dir():
            raise InvalidRequest(f"{directory} is not a directory")
        image_id = f"img-{uuid.uuid4().hex[:12]}"
        staging = self.root / "images" / f".{image_id}.tmp"
        shutil.copytree(directory, staging / "rootfs", symlinks=True)
        return self._publish_image(staging, image_id, name, family, {}, None, state)

    def record_versions(self, image_id: str, versions: Mapping[str, str]) -> None:
        path = self.root / "images" / image_id / "image.json"
        meta = _read_json(path)
        meta["versions"] = dict(versions)
        _write_json(path, meta)

    def set_image_state(
        self, image_id: str, state: ImageState, *, deprecated_at: datetime | None = None
    ) -> None:
        path = self.root / "images" / image_id / "image.json"
        meta = _read_json(path)
        meta["state"] = state.value
        meta["deprecated_at"] = deprecated_at.isoformat() if deprecated_at else None
        _write_json(path, meta)

    def list_images(self, family: str | None = None) -> list[Image]:
        images = []
        for path in sorted((self.root / "images").glob("img-*/image.json")):
            try:
                images.append(_image_from(_read_json(path)))
            except FileNotFoundError:
                continue  # deleted while listing (a prune in another thread): like a cloud's list
        return [i for i in images if family is None or i.family == family]

    def resolve_image(self, ref: str) -> Image:
        images = self.list_images()
        if ref.startswith("family:"):
            family = ref.removeprefix("family:")
            newest = newest_usable([i for i in images if i.family == family], self._clock())
            if newest is None:
                raise NotFound(f"no ready image in family {family!r}")
            return newest
        for image in images:
            if ref in (image.id, image.name):
                return image
        raise NotFound(f"no image with id or name {ref!r}")

    def snapshot(
        self,
        server: Server,
        *,
        name: str,
        family: str | None,
        versions: Mapping[str, str],
        tags: Mapping[str, str] | None = None,
    ) -> Image:
        _check_name("image name", name)
        source = self._server_dir(server.id) / "rootfs"
        if not source.is_dir():
            raise NotFound(f"server {server.id} does not exist")
        existing = next((i for i in self.list_images() if i.name == name), None)
        if existing is not None:
            return existing  # a resumed snapshot under the same name made it already
        image_id = f"img-{uuid.uuid4().hex[:12]}"
        staging = self.root / "images" / f".{image_id}.tmp"
        shutil.copytree(source, staging / "rootfs", symlinks=True)
        return self._publish_image(
            staging, image_id, name, family, versions, None, ImageState.READY, tags
        )

    def delete_image(self, image: Image) -> None:
        directory = self.root / "images" / _check_name("image id", image.id)
        if directory.is_dir():
            trash = self.root / "images" / f".{image.id}.{uuid.uuid4().hex}.deleted"
            os.replace(directory, trash)  # gone from listings at once, then removed
            shutil.rmtree(trash, ignore_errors=True)

    # servers ----------------------------------------------------------------------------

    def _server_dir(self, server_id: str) -> Path:
        return self.root / "servers" / _check_name("server id", server_id)

    def launch(self, request: LaunchRequest) -> Server:
        server_id = _check_name("server key", request.key)
        with self._lock:
            path = self._server_dir(server_id) / "server.json"
            if path.exists():
                meta = _read_json(path)
                if meta["state"] == ServerState.TERMINATED:
                    raise InvalidRequest(f"server {server_id} was already terminated")
                self._index.put(meta)  # a crash may have come before the index heard of it
                return _server_from(meta, str(path.parent / "rootfs"))
            source = self.root / "images" / request.image.id / "rootfs"
            if not source.is_dir():
                raise NotFound(f"image {request.image.id} does not exist")
            staging = self.root / "servers" / f".{server_id}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
        meta = {
            "id": server_id,
            "name": request.name,
            "image_id": request.image.id,
            "state": ServerState.PENDING.value,
            "created_at": self._clock().isoformat(),
            "tags": {**request.tags, TAG_KEY: request.key},
            "spec": {"size": request.spec.size, "region": request.spec.region},
        }
        # Listed before it exists: after a crash here the reconciler still sees the server.
        self._index.put(meta)
        shutil.copytree(source, staging / "rootfs", symlinks=True)
        meta["state"] = ServerState.RUNNING.value
        _write_json(staging / "server.json", meta)
        os.replace(staging, self._server_dir(server_id))
        self._index.put(meta)
        return _server_from(meta, str(self._server_dir(server_id) / "rootfs"))

    def _load_server(self, server_id: str) -> Server | None:
        path = self._server_dir(server_id) / "server.json"
        if not path.exists():
            return None
        return _server_from(_read_json(path), str(path.parent / "rootfs"))

    def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
        return each(self.launch, requests)

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        return outcome(self.run_script_all([(server, script)])[0])

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        """Start every script, then wait for each (until its own deadline): they run at once."""
        started = [self._start(server, script) for server, script in jobs]
        return [s if isinstance(s, ProviderError) else s.finish() for s in started]

    def _start(self, server: Server, script: Script) -> _Running | ProviderError:
        rootfs = self._server_dir(server.id) / "rootfs"
        if not rootfs.is_dir():
            return NotFound(f"server {server.id} does not exist")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(rootfs),
            **script.env,
            "BYOI_ROOT": str(rootfs),
        }
        # Output into a file, not a pipe: nobody has to read a thousand pipes as they fill.
        output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _Running.finish
        try:
            # In a session of its own, as on a server of its own: a Ctrl-C in the terminal byoi
            # runs in never reaches it, and a timeout ends everything the script started.
            process = subprocess.Popen(
                ["bash", "-c", script.body],
                cwd=rootfs,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:  # e.g. out of processes: this server's failure, not the run's
            output.close()
            return ProviderError(f"cannot start {script.name} on {server.id}: {exc}")
        return _Running(script, process, output, time.monotonic() + script.timeout_seconds)

    def tag_server(self, server: Server, tags: Mapping[str, str]) -> None:
        path = self._server_dir(server.id) / "server.json"
        with self._lock:
            if not path.exists():
                raise NotFound(f"server {server.id} does not exist")
            meta = _read_json(path)
            meta["tags"] = {**meta["tags"], **tags}
            _write_json(path, meta)
            self._index.put(meta)  # listings by tag read the index

    def tag_all(
        self, tagged: Sequence[tuple[Server, Mapping[str, str]]]
    ) -> list[ProviderError | None]:
        return each(lambda item: self.tag_server(*item), tagged)

    def terminate(self, server: Server) -> None:
        directory = self._server_dir(server.id)
        path = directory / "server.json"
        if path.exists():
            meta = _read_json(path)
            meta["state"] = ServerState.TERMINATED.value
            _write_json(path, meta)
        shutil.rmtree(directory / "rootfs", ignore_errors=True)
        # Unlisted only once its files are gone: after a crash before that, it is still listed,
        # so the rollback or the reconciler terminates it again and its files do not stay.
        self._index.remove(server.id)

    def list_servers(self, tags: Mapping[str, str]) -> list[Server]:
        # Addresses as strings: pathlib's joins cost more than the rest of a listing.
        servers = f"{self.root / 'servers'}{os.sep}"
        return [
            _server_from(meta, f"{servers}{meta['id']}{os.sep}rootfs")
            for meta in self._index.find(tags)
        ]

    def count_servers(self, tags: Mapping[str, str], keys: KeyMatch) -> int:
        return self._index.count(tags, keys)

    def _scan_servers(self) -> Iterator[dict[str, Any]]:
        """Every live server on disk: builds the index of a directory made before it existed."""
        for path in sorted((self.root / "servers").glob("*/server.json")):
            meta = _read_json(path)
            if meta["state"] != ServerState.TERMINATED:
                yield meta

    # targets ----------------------------------------------------------------------------

    @contextmanager
    def _target_file(self, target: Target) -> Iterator[dict[str, Any]]:
        path = self.root / "targets" / f"{_check_name('target', target.name)}.json"
        lock_path = path.with_suffix(".lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = _read_json(path) if path.exists() else {"members": {}}
            yield data
            _write_json(path, data)

    def register(self, server: Server, target: Target) -> None:
        outcome(self.register_all([server], target)[0])

    def register_all(self, servers: Sequence[Server], target: Target) -> list[ProviderError | None]:
        """Every running server of ``servers`` joins the target, in one write of it."""
        outcomes: list[ProviderError | None] = []
        with self._target_file(target) as data:
            for server in servers:
                current = self._load_server(server.id)
                if current is None or current.state != ServerState.RUNNING:
                    outcomes.append(RegistrationFailed(f"server {server.id} is not running"))
                    continue
                data["members"][server.id] = {
                    "address": str(self._server_dir(server.id) / "rootfs"),
                    "since": self._clock().isoformat(),
                }
                outcomes.append(None)
        return outcomes

    def deregister(self, server: Server, target: Target) -> None:
        with self._target_file(target) as data:
            present = data["members"].pop(server.id, None) is not None
        if present and target.drain_seconds > 0:
            time.sleep(target.drain_seconds)

    def target_members(self, target: Target) -> list[str]:
        with self._target_file(target) as data:
            return sorted(data["members"])


@dataclass
class _Running:
    """A script started on a server: its process, the file its output goes to, its deadline."""

    script: Script
    process: subprocess.Popen[bytes]
    output: IO[bytes]
    deadline: float

    def finish(self) -> ScriptResult | ProviderError:
        """Wait for the script until its deadline; a late one is killed with all it started."""
        try:
            try:
                self.process.wait(timeout=max(0.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                timeout = self.script.timeout_seconds
                return ProviderTimeout(f"{self.script.name} did not finish within {timeout:g}s")
            size = self.output.seek(0, os.SEEK_END)
            self.output.seek(max(0, size - OUTPUT_BYTES))
            text = self.output.read().decode(errors="replace")
        finally:
            self.output.close()
        if size > OUTPUT_BYTES:
            text = f"[the first {size - OUTPUT_BYTES} bytes of output are not kept]\n{text}"
        # As text mode reads it: every line ends in \n.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return ScriptResult(exit_code=self.process.returncode, output=text)


def _image_from(meta: Mapping[str, Any]) -> Image:
    deprecated = meta.get("deprecated_at")
    return Image(
        id=meta["id"],
        name=meta["name"],
        created_at=datetime.fromisoformat(meta["created_at"]),
        state=ImageState(meta.get("state", "ready")),
        family=meta.get("family"),
        versions=dict(meta.get("versions") or {}),
        tags=dict(meta.get("tags") or {}),
        deprecated_at=datetime.fromisoformat(deprecated) if deprecated else None,
    )


def _server_from(meta: Mapping[str, Any], address: str) -> Server:
    return Server(
        id=meta["id"],
        name=meta["name"],
        image_id=meta["image_id"],
        state=ServerState(meta["state"]),
        created_at=datetime.fromisoformat(meta["created_at"]),
        tags=dict(meta["tags"]),
        address=address,
    )
