"""Scripts over SSH: byoi's own key pair, host keys pinned on first contact, one step per call.

Used by adapters whose servers have no agent channel (DigitalOcean). asyncssh is imported only
when such an adapter is. The command line sent to the server is a constant; the script and its
parameters travel on stdin, base64-encoded into environment variables, so no user text is ever
parsed as shell on either side. Each call runs its own event loop, so the runner's worker
threads can call it side by side.
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from providers.base import (
    AuthError,
    InvalidRequest,
    ProviderError,
    ProviderTimeout,
    Script,
    ScriptResult,
    outcome,
)

# Reads the whole payload before running it, so the script's own stdin is /dev/null and a
# command that reads stdin cannot swallow the rest of the script.
COMMAND = "bash -c 'payload=$(cat) && eval \"$payload\"'"
KEY_NAME = "id_ed25519"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def payload(script: Script) -> str:
    """What ``COMMAND`` evaluates: exports of base64 data, then the script, stdin closed."""
    lines = []
    for name, value in sorted(script.env.items()):
        if not name.isidentifier() or not name.isascii():
            raise InvalidRequest(f"bad environment variable name {name!r}")
        lines.append(f'export {name}="$(printf %s {_b64(value)} | base64 -d)"')
    lines.append(f'exec bash -c "$(printf %s {_b64(script.body)} | base64 -d)" </dev/null')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_key: str
    """OpenSSH text, ``ssh-ed25519 AAAA... byoi``."""
    fingerprint: str
    """MD5, colon-separated: how DigitalOcean names a key."""


def ensure_key_pair(directory: Path) -> KeyPair:
    """byoi's key pair in ``directory``, created (mode 0600) on first use."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = directory / KEY_NAME
    if not private.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="byoi")
        tmp = directory / f".{KEY_NAME}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key.export_private_key())
        os.replace(tmp, private)
        (directory / f"{KEY_NAME}.pub").write_bytes(key.export_public_key())
    key = asyncssh.read_private_key(str(private))
    return KeyPair(
        private_path=private,
        public_key=key.export_public_key().decode().strip(),
        fingerprint=key.get_fingerprint("md5").removeprefix("MD5:"),
    )


class PinnedHosts:
    """Host keys seen on first contact, one line per server: ``<server id> <address> <key>``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def get(self, server_id: str, address: str) -> asyncssh.SSHKey | None:
        if not self.path.exists():
            return None
        for line in self.path.read_text().splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == server_id and parts[1] == address:
                return asyncssh.import_public_key(parts[2])
        return None

    def pin(self, server_id: str, address: str, key: asyncssh.SSHKey) -> None:
        with self._lock:
            if self.get(server_id, address) is None:
                text = key.export_public_key().decode().strip()
                with self.path.open("a") as out:
                    out.write(f"{server_id} {address} {text}\n")


@dataclass(frozen=True)
class SshTarget:
    server_id: str
    address: str
    port: int = 22
    user: str = "root"


class SshRunner:
    def __init__(self, keys: KeyPair, hosts: PinnedHosts, *, connect_seconds: float) -> None:
        self.keys = keys
        self.hosts = hosts
        self.connect_seconds = connect_seconds

    def run(self, target: SshTarget, script: Script) -> ScriptResult:
        return outcome(self.run_all([(target, script)])[0])

    def run_all(
        self, jobs: Sequence[tuple[SshTarget, Script]]
    ) -> list[ScriptResult | ProviderError]:
        """Every script at once, each over its own session, all on one event loop (not a
        thread each); an error other than a ``ProviderError`` is raised once all are done."""
        return asyncio.run(self._run_all(jobs)) if jobs else []

    async def _run_all(
        self, jobs: Sequence[tuple[SshTarget, Script]]
    ) -> list[ScriptResult | ProviderError]:
        answers = await asyncio.gather(
            *(self._run(target, script) for target, script in jobs), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, ProviderError):
                raise answer
        return [a for a in answers if isinstance(a, ScriptResult | ProviderError)]

    async def _run(self, target: SshTarget, script: Script) -> ScriptResult:
        conn = await self._connect(target, script.name)
        async with conn:
            try:
                done = await conn.run(
                    COMMAND,
                    input=payload(script),
                    stderr=asyncssh.STDOUT,
                    timeout=script.timeout_seconds,
                    errors="replace",  # output that is not UTF-8 is still the script's output
                )
            except asyncssh.TimeoutError as exc:
                raise ProviderTimeout(
                    f"{script.name} did not finish within {script.timeout_seconds:g}s"
                ) from exc
            except (OSError, asyncssh.Error) as exc:
                raise ProviderError(f"{script.name} over SSH: {exc}") from exc
        code = done.exit_status if done.exit_status is not None else -1
        output = done.stdout if isinstance(done.stdout, str) else str(done.stdout or "")
        return ScriptResult(exit_code=code, output=output)

    async def _connect(self, target: SshTarget, step: str) -> asyncssh.SSHClientConnection:
        """Connect, retrying while sshd is still starting; a changed host key is never retried."""
        pinned = self.hosts.get(target.server_id, target.address)
        deadline = time.monotonic() + self.connect_seconds
        delay = 0.2
        while True:
            try:
                conn = await asyncssh.connect(
                    target.address,
                    target.port,
                    username=target.user,
                    client_keys=[str(self.keys.private_path)],
                    known_hosts=([pinned], [], []) if pinned else None,
                    connect_timeout=min(30.0, max(1.0, self.connect_seconds)),
                    agent_path=None,
                    config=None,
                )
            except asyncssh.HostKeyNotVerifiable as exc:
                raise AuthError(
                    f"{step}: the host key of {target.server_id} ({target.address}) changed "
                    "since byoi first connected; refusing to run scripts on it"
                ) from exc
            except asyncssh.PermissionDenied as exc:
                raise AuthError(
                    f"{step}: {target.user}@{target.address} refused byoi's SSH key"
                ) from exc
            except (OSError, asyncssh.Error) as exc:
                if time.monotonic() + delay > deadline:
                    raise ProviderTimeout(
                        f"{step}: no SSH on {target.address}:{target.port} within "
                        f"{self.connect_seconds:g}s ({exc})"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if pinned is None:
                key = conn.get_server_host_key()
                if key is not None:
                    self.hosts.pin(target.server_id, target.address, key)
            return conn
