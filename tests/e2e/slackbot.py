"""Run `byoi serve` as a real process and talk to it the way Slack does: signed HTTP requests."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from slack_sdk.signature import SignatureVerifier

from tests.conftest import FIXTURES, World, config_text, make_world, today
from tests.fakes.slack_api import FakeSlack

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token-1234567890"
PAYLOADS = FIXTURES / "slack-payloads"
TGKILL = {"x86_64": 234, "aarch64": 131}.get(platform.machine()) if Path("/proc").is_dir() else None
"""Linux's tgkill system call's number (a signal to one thread of a process), where known."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Bot:
    url: str
    process: subprocess.Popen[str]
    fake: FakeSlack
    root: Path
    log: Path

    def post(
        self, body: str, content_type: str, *, timestamp: int | None = None, secret: str = SECRET
    ) -> tuple[int, str, float]:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        request = urllib.request.Request(
            f"{self.url}/slack/events",
            data=body.encode(),
            method="POST",
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signature,
            },
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode(), time.monotonic() - started
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), time.monotonic() - started

    def command(
        self, text: str, user: str = "W111", channel: str = "C111", **kwargs: Any
    ) -> tuple[int, str, float]:
        return self.post(
            slash_body(text, user, channel, self.fake.response_url),
            "application/x-www-form-urlencoded",
            **kwargs,
        )

    def click(self, action: str, run_id: int | str, user: str) -> tuple[int, str, float]:
        return self.post(
            click_body(action, run_id, user, self.fake.response_url),
            "application/x-www-form-urlencoded",
        )

    def event(self, payload: dict[str, Any]) -> tuple[int, str, float]:
        return self.post(json.dumps(payload), "application/json")

    def logs(self) -> str:
        return self.log.read_text()

    def sigterm(self, timeout: float = 60) -> float:
        """Send SIGTERM; seconds until the process exited."""
        started = time.monotonic()
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # every thread's stack, into the log
            time.sleep(1.0)
            tail = self.logs()[-20_000:]
            raise AssertionError(f"no exit {timeout}s after SIGTERM:\n{tail}") from None
        return time.monotonic() - started

    def sigterm_to_a_thread(self, timeout: float = 60) -> float:
        """Send SIGTERM to one of the process's threads other than its main one, as the kernel
        may deliver a process's signal to any thread (tgkill); seconds until it exited."""
        pid = self.process.pid
        tid = next(int(t) for t in sorted(os.listdir(f"/proc/{pid}/task")) if int(t) != pid)
        libc = ctypes.CDLL(None, use_errno=True)
        started = time.monotonic()
        if libc.syscall(TGKILL, pid, tid, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), f"tgkill {pid} {tid}")
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit {timeout}s after SIGTERM to thread {tid}") from None
        return time.monotonic() - started

    def events(self) -> list[tuple[int | None, str]]:
        """(run id, event) from the audit log, read from the database file."""
        import sqlite3

        db = sqlite3.connect(self.root / "byoi.db")
        try:
            return db.execute("SELECT run_id, event FROM audit ORDER BY id").fetchall()
        finally:
            db.close()


def slash_body(text: str, user: str, channel: str, response_url: str) -> str:
    """Slack's real slash-command form (bolt-python's fixture), with our command in it."""
    fields = dict(parse_qsl((PAYLOADS / "slash_command.bolt_python.form.txt").read_text()))
    fields.update(
        command="/byoi",
        text=text,
        user_id=user,
        channel_id=channel,
        response_url=response_url,
        trigger_id=f"{time.time_ns()}.{uuid.uuid4().hex}",  # unique, as Slack's are
    )
    return urlencode(fields)


def click_body(action: str, run_id: int | str, user: str, response_url: str) -> str:
    """A real block_actions payload (bolt-python's fixture) clicking one of our buttons."""
    payload = json.loads((PAYLOADS / "block_actions.message_button.json").read_text())
    payload["user"] = {"id": user}
    payload["response_url"] = response_url
    payload["actions"][0].update(action_id=action, value=str(run_id), block_id="run-approval")
    payload["trigger_id"] = f"{time.time_ns()}.{uuid.uuid4().hex}"
    return urlencode({"payload": json.dumps(payload)})


SLACK_CONFIG = config_text(operators='["W111", "UALICE"]', approvers='["UBOB", "UCAROL", "S0OPS"]')


@contextmanager
def running_bot(
    root: Path,
    config: str = SLACK_CONFIG,
    env: dict[str, str] | None = None,
    fake: FakeSlack | None = None,
    before: Callable[[World], None] | None = None,
) -> Iterator[Bot]:
    """`byoi serve` on the local provider, with a world made from ``config``."""
    world = make_world(root, config, now=today())
    if before is not None:
        before(world)
    world.store.close()
    fake = fake or FakeSlack()
    fake.start()
    try:
        with serving(root, fake, env) as bot:
            yield bot
    finally:
        fake.stop()


@contextmanager
def serving(
    root: Path,
    fake: FakeSlack,
    env: dict[str, str] | None = None,
    log_name: str = "serve.log",
    *,
    wait_healthy: bool = True,
    command: list[str] | None = None,
) -> Iterator[Bot]:
    """`byoi serve` on ``root/byoi.yml`` as a real process, against a running fake Slack."""
    port = free_port()
    log = root / log_name
    environment = {
        **os.environ,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": (env or {}).get("SLACK_API_URL") or fake.api_url,
        "PORT": str(port),
        "BYOI_HOST": "127.0.0.1",
        "BYOI_CONFIG": str(root / "byoi.yml"),
        "BYOI_LOG_LEVEL": "INFO",
        **(env or {}),
    }
    if "SLACK_APP_TOKEN" not in (env or {}):
        environment.pop("SLACK_APP_TOKEN", None)
    with log.open("w") as out:
        process = subprocess.Popen(
            command or [sys.executable, "-m", "bot", "serve"],
            cwd=root,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    bot = Bot(f"http://127.0.0.1:{port}", process, fake, root, log)
    try:
        if wait_healthy and "SLACK_APP_TOKEN" not in (env or {}):
            _wait_healthy(bot)
        yield bot
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_healthy(bot: Bot, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bot.process.poll() is not None:
            raise AssertionError(f"byoi serve exited:\n{bot.logs()}")
        try:
            with urllib.request.urlopen(f"{bot.url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"byoi serve never became healthy:\n{bot.logs()}")
