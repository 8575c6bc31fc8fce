"""`byoi shell`: the Slack command language in a terminal, or a script read from stdin.

Buttons become typed commands (`approve 3`); `as USER` switches who is typing. In a script
(stdin is not a terminal) each line waits for the runs it started, so output is repeatable.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import TextIO

from bot.shell import text
from bot.wiring import App
from pipeline.config.keys import USER_REF
from pipeline.domain.models import Run, ServerStatus, Step
from pipeline.services.caller import Caller
from pipeline.services.replies import AlertsReply

SHELL_HELP = """\
  scan             check every image for age, drift and deprecation now (what the schedule does)
  as <USER>        switch who is typing (a Slack-style user id, e.g. UBOB)
  whoami           who is typing
  quit             leave (runs in flight continue next time byoi starts)"""


class TextNotifier:
    """Prints a line whenever a server's step or a run's state changes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._seen: dict[tuple[int, int], tuple[ServerStatus, Step | None]] = {}
        self._notes: dict[tuple[int, int], str] = {}
        self._states: dict[int, str] = {}
        self._lock = threading.Lock()

    def run_changed(self, run: Run) -> None:
        with self._lock:
            for server in run.servers:
                now = (server.status, server.step)
                if self._seen.get((run.id, server.slot), (ServerStatus.PENDING, None)) != now:
                    self._seen[(run.id, server.slot)] = now
                    self._print(f"[run {run.id}]" + text.server_line(run, server)[3:])
                if server.note and self._notes.get((run.id, server.slot)) != server.note:
                    self._notes[(run.id, server.slot)] = server.note
                    self._print(
                        f"[run {run.id}]   {server.provider_id or server.key}: {server.note}"
                    )
            said = f"{run.state.value}:{run.reason or ''}"
            if self._states.get(run.id) != said:
                self._states[run.id] = said
                if run.state.terminal:
                    self._print(text.run_text(run))
                else:
                    reason = f" · {run.reason}" if run.reason else ""
                    self._print(f"[run {run.id}] {run.state.value.replace('_', ' ')}{reason}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


class Shell:
    def __init__(self, app: App, user: str, out: TextIO) -> None:
        self.app = app
        self.user = user
        self.out = out

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def line(self, raw: str) -> bool:
        """Handle one line; False means quit."""
        words = raw.strip().split()
        if not words or words[0].startswith("#"):
            return True
        verb = words[0].lower()
        if verb in ("quit", "exit"):
            return False
        if verb == "whoami":
            self.say(f"You are {self.user}.")
            return True
        if verb == "as":
            self._switch(words[1:])
            return True
        if verb == "scan":
            scanned = self.app.service.views.scan(self.app.clock(), "shell")
            self.say(text.render(scanned))
            shown = [*scanned.changes.new, *scanned.changes.reminded]
            if shown:
                self.say(text.render(AlertsReply(tuple(shown), scanned.now)))
            return True

        now = self.app.clock()
        for run in self.app.service.expire_due(now):
            self.say(f"run {run.id} expired: no approval in time.")
        reply = self.app.service.handle(raw, Caller(self.user), now)
        self.say(text.render(reply))
        if verb == "help" and len(words) == 1:
            self.say(SHELL_HELP)
        return True

    def _switch(self, args: list[str]) -> None:
        user = args[0].upper() if len(args) == 1 else ""
        if not re.match(r"^[UW][A-Z0-9]{2,20}$", user) or not USER_REF.match(user):
            self.say("✗ Give one user id, for example `as UBOB`.")
            return
        self.user = user
        self.say(f"You are now {user}.")

    def run(self, source: TextIO, interactive: bool) -> int:
        while True:
            if interactive:
                try:
                    raw = input(f"byoi ({self.user})> ")
                except (EOFError, KeyboardInterrupt):
                    self.say("")
                    break
            else:
                raw = source.readline()
                if not raw:
                    break
                if raw.strip() and not raw.lstrip().startswith("#"):
                    self.say(f"{self.user}> {raw.strip()}")
            if not self.line(raw):
                break
            if not interactive:
                self.app.runner.wait()
        self.app.runner.wait()
        return 0


def main(app: App, user: str, banner: str | None) -> int:
    interactive = sys.stdin.isatty()
    shell = Shell(app, user, sys.stdout)
    if banner and interactive:
        shell.say(banner)
    if not interactive and banner:
        shell.say(banner.splitlines()[0])
    return shell.run(sys.stdin, interactive)
