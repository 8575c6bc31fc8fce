"""Real SSH servers standing in for droplets: asyncssh, one listener per droplet.

Every droplet gets its own loopback address (127.0.0.N) on one shared port, its own host key
and its own root directory. Commands run with bash in that root with ``BYOI_ROOT`` pointing at
it, so the scrub, deploy and health scripts really run, on files a test can inspect. Only the
public keys the droplet was created with may log in, as on a real droplet.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh


@dataclass
class Host:
    droplet_id: int
    address: str
    root: Path
    host_key: asyncssh.SSHKey
    authorized: list[str]
    server: Any = None
    commands: list[str] = field(default_factory=list)
    running: set[Any] = field(default_factory=set)


class FakeHosts:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.hosts: dict[int, Host] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        # Holding 127.0.0.1:port keeps the shared port ours for every 127.0.0.N.
        self._holder = socket.socket()
        self._holder.bind(("127.0.0.1", 0))
        self.port: int = self._holder.getsockname()[1]
        self._next = 2

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def address(self) -> str:
        """A fresh loopback address for the next droplet."""
        address = f"127.0.{self._next // 250}.{self._next % 250 + 2}"
        self._next += 1
        return address

    def add(
        self, droplet_id: int, address: str, image_root: Path | None, authorized: list[str]
    ) -> Host:
        """Make the droplet's root from its image's tree (sshd is not listening yet)."""
        root = self.base / str(droplet_id) / "rootfs"
        if image_root is not None and image_root.is_dir():
            shutil.copytree(image_root, root, symlinks=True)
        root.mkdir(parents=True, exist_ok=True)
        host = Host(
            droplet_id, address, root, asyncssh.generate_private_key("ssh-ed25519"), authorized
        )
        self.hosts[droplet_id] = host
        return host

    def start(self, droplet_id: int) -> None:
        """sshd comes up: the droplet starts accepting connections."""
        host = self.hosts[droplet_id]
        if host.server is None:
            host.server = self._call(self._listen(host))

    def stop(self, droplet_id: int) -> None:
        host = self.hosts.get(droplet_id)
        if host is not None and host.server is not None:
            host.server.close()
            self._call(host.server.wait_closed())
            host.server = None

    def new_host_key(self, droplet_id: int) -> None:
        """Simulate a server whose identity changed (or a man in the middle)."""
        self.stop(droplet_id)
        self.hosts[droplet_id].host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.start(droplet_id)

    def close(self) -> None:
        for droplet_id, host in list(self.hosts.items()):
            self.stop(droplet_id)
            for child in list(host.running):  # a step whose client gave up on it
                child.kill()
                self._call(child.wait())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._holder.close()

    async def _listen(self, host: Host) -> Any:
        keys = (
            asyncssh.import_authorized_keys("\n".join(host.authorized) + "\n")
            if host.authorized
            else None  # no key may log in
        )

        async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
            await _execute(host, process)

        return await asyncssh.create_server(
            asyncssh.SSHServer,
            host.address,
            self.port,
            server_host_keys=[host.host_key],
            authorized_client_keys=keys,
            process_factory=handle,
            encoding=None,  # bytes, as sshd passes them: what a script prints need not be UTF-8
        )


async def _execute(host: Host, process: asyncssh.SSHServerProcess[bytes]) -> None:
    command = process.command or ""
    host.commands.append(command)
    stdin = await process.stdin.read()
    child = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        cwd=host.root,
        env={
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(host.root),
            "BYOI_ROOT": str(host.root),
        },
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    host.running.add(child)
    try:
        out, err = await child.communicate(stdin)
    finally:
        host.running.discard(child)
    process.stdout.write(out)
    process.stderr.write(err)
    process.exit(child.returncode if child.returncode is not None else 255)
