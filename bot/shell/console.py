"""`byoi shell`: the Slack command language in a terminal, or a script read from stdin.

Buttons become typed commands (`approve 3`); `as USER` switches who is typing. In a script
(stdin is not a terminal) each line waits for the runs it started, so output is repeatable.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from bot.shell import interrupts, text
from bot.views.words import part_line, state_words
from bot.wiring import App
from pipeline.config.keys import USER_REF
from pipeline.domain.commands import shown
from pipeline.domain.models import Run, RunServer, RunState, ServerStatus, steps_of
from pipeline.errors import UserError, logged
from pipeline.services.caller import Caller
from pipeline.services.display import Display
from pipeline.services.replies import AlertsReply

log = logging.getLogger(__name__)

SHELL_HELP = """\
  scan             check every image for age, drift and deprecation now (what the schedule does)
  as <USER>        switch who is typing (a Slack-style user id, e.g. UBOB)
  whoami           who is typing
  quit             leave, once the runs in flight have finished"""


class Console:
    """The one place shell output goes: whole messages, one at a time, whoever prints them
    (the shell's own replies, or run progress from the runner's threads)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._answering: int | None = None
        """The thread whose answer the others' messages wait for (``answer_first``)."""
        self._waiting: list[str] = []

    def say(self, message: str) -> None:
        with self._lock:
            if self._answering not in (None, threading.get_ident()):
                self._waiting.append(message)
                return
            self._write(message)

    @contextmanager
    def answer_first(self) -> Iterator[None]:
        """While a command is answered, what it set off in other threads (a run's first steps)
        waits, and is printed after the answer (`Approved…; starting.` before the steps)."""
        with self._lock:
            self._answering = threading.get_ident()
        try:
            yield
        finally:
            with self._lock:
                self._answering = None
                waiting, self._waiting = self._waiting, []
                for message in waiting:
                    self._write(message)

    def _write(self, message: str) -> None:
        self.out.write(message + "\n")
        self.out.flush()


STOPPED = 130
"""The shell's exit status when a second Ctrl-C stopped it with runs in flight."""
SKIPPED_SHOWN = 3
"""Servers skipped at once shown one by one; more are counted in a line per reason."""
_STATUS_ORDER = {ServerStatus.PENDING: 0, ServerStatus.WORKING: 1, ServerStatus.DONE: 2}
"""Within a step; an end other than done comes last: a server shown done can still be rolled
back with its batch, or by a cancel of its canary."""


def _progress(run: Run, server: RunServer) -> tuple[int, int]:
    """How far a server has got: a later step of its run, or the same step further on, is
    more. Steps count in the order the server takes them (a new server probes before it
    registers), not in the order they are named."""
    steps = steps_of(run.kind, server.slot)
    step = server.step
    rank = 0 if step is None else steps.index(step) + 1 if step in steps else len(steps) + 1
    return (rank, _STATUS_ORDER.get(server.status, 3))


class TextNotifier:
    """Prints a line whenever a server's step or a run's state moves forward, and each phase's
    line (the same as in the Slack thread) when its last server leaves the step.

    Runs are reported from several threads, so a snapshot can arrive after a newer one; a
    server is never shown going backwards (`register working` after `register done`)."""

    needs_servers = True  # each server's step and note are printed

    def __init__(self, console: Console, display: Display | None = None) -> None:
        self.console = console
        self.display = display
        self._phases: dict[tuple[int, str], str] = {}
        self._seen: dict[tuple[int, int], tuple[int, int]] = {}
        self._notes: dict[tuple[int, int], str] = {}
        self._states: dict[int, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def run_changed(self, run: Run) -> None:
        with self._lock:
            lines = self._servers_lines(run) + self._phase_lines(run)
            said = (_state_rank(run.state), run.reason or "")
            before = self._states.get(run.id, (-1, ""))
            if said[0] > before[0] or (said[0] == before[0] and said[1] != before[1]):
                self._states[run.id] = said
                if run.state.terminal:
                    lines.append(text.run_text(run))
                else:  # before its servers' lines (a resumed run's first snapshot has both)
                    reason = f" · {run.reason}" if run.reason else ""
                    lines.insert(0, f"[run {run.id}] {state_words(run.state)}{reason}")
            if lines:
                self.console.say("\n".join(lines))

    def _servers_lines(self, run: Run) -> list[str]:
        """Each server's new lines; servers skipped at once (a stopped roll's rest, a serial
        run's after a failure) in one line per reason once they are more than a few."""
        lines: list[str] = []
        skipped: list[tuple[RunServer, list[str]]] = []
        for server in run.servers:
            said = self._server_lines(run, server)
            if said and server.status == ServerStatus.SKIPPED:
                skipped.append((server, said))
            else:
                lines += said
        if len(skipped) <= SKIPPED_SHOWN:
            return lines + [line for _, said in skipped for line in said]
        reasons = Counter(server.reason or "" for server, _ in skipped)
        for reason, count in reasons.items():
            because = f" · {reason}" if reason else ""
            lines.append(f"[run {run.id}]     {count} server(s) skipped{because}")
        return lines

    def _server_lines(self, run: Run, server: RunServer) -> list[str]:
        key = (run.id, server.slot)
        lines = []
        # A step's report is stored with the step's end, so it comes first: the step the
        # snapshot shows the server in has only begun.
        if server.note and self._notes.get(key) != server.note:
            self._notes[key] = server.note
            lines.append(f"[run {run.id}]   {server.provider_id or server.key}: {server.note}")
        progress = _progress(run, server)
        if progress > self._seen.get(key, (0, 0)):
            self._seen[key] = progress
            lines.append(f"[run {run.id}]" + text.server_line(run, server)[3:])
        return lines

    def _phase_lines(self, run: Run) -> list[str]:
        """Each phase (a roll: each batch) once it is over, and a batch while it is paused."""
        lines = []
        for part in self.display.phases(run) if self.display else ():
            line = part_line(part)
            if (part.finished or part.paused) and self._phases.get((run.id, part.key)) != line:
                self._phases[(run.id, part.key)] = line
                mark = "⏸" if part.paused else "⚠" if part.troubled else "✓"
                lines.append(f"[run {run.id}] {mark} {line}")
        return lines


def _state_rank(state: RunState) -> int:
    order = list(RunState)
    return len(order) if state.terminal else order.index(state)


class Shell:
    def __init__(self, app: App, user: str, console: Console) -> None:
        self.app = app
        self.user = user
        self.console = console

    def say(self, message: str) -> None:
        self.console.say(message)

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
            self.say(self._answer(self._scan))
            return True
        with self.console.answer_first():
            self.say(self._answer(lambda: self._command(raw)))
        if verb == "help" and len(words) == 1:
            self.say(SHELL_HELP)
        return True

    def _answer(self, work: Callable[[], str]) -> str:
        """Where the shell turns errors into what it prints: a UserError says what to fix;
        anything else goes to the log with its trace, and the shell says its reference."""
        try:
            return work()
        except UserError as error:
            return text.error_text(error)
        except Exception:  # noqa: BLE001 - logged() logs the trace
            ref = logged(log, "a shell command")
            return f"✗ internal error (reference {ref}); the details are in byoi's log."

    def _scan(self) -> str:
        scanned = self.app.service.views.scan(self.app.clock(), "shell")
        shown = [*scanned.changes.new, *scanned.changes.reminded]
        alerts = [text.render(AlertsReply(tuple(shown), scanned.now))] if shown else []
        return "\n".join([text.render(scanned), *alerts])

    def _command(self, raw: str) -> str:
        now = self.app.clock()
        for run in self.app.service.expire_due(now):
            self.say(f"run {run.id} expired: no approval in time.")
        return text.render(self.app.service.handle(raw, Caller(self.user), now))

    def _switch(self, args: list[str]) -> None:
        if len(args) != 1:
            self.say("✗ Give one user id, for example `as UBOB`.")
            return
        user = user_id(args[0])
        if user is None:
            self.say(
                f"✗ `{shown(args[0])}` is not a Slack user id (U… or W… and letters or digits, "
                "for example `as UBOB`)."
            )
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
                try:
                    raw = source.readline()
                except KeyboardInterrupt:  # read no more, as at the end of the input
                    self.say("")
                    break
                if not raw:
                    break
                if raw.strip() and not raw.lstrip().startswith("#"):
                    self.say(f"{self.user}> {raw.strip()}")
            if not self.line(raw):
                break
            if not interactive:
                try:
                    self._wait_for_runs()
                except KeyboardInterrupt:  # read no more; a second one stops at once
                    self.say("")
                    break
        return self._leave()

    def _wait_for_runs(self) -> None:
        """The runner's ``wait``, but in steps a Ctrl-C may interrupt: on Python 3.11 a thread
        join it interrupts takes the thread for finished (the run would be left behind)."""
        while self.app.runner.busy:
            time.sleep(0.1)
        self.app.runner.wait()

    def _leave(self) -> int:
        """Wait for the runs in flight; a second Ctrl-C stops at once (the next start resumes
        them, as after any crash)."""
        try:
            if self.app.runner.busy:
                self.say("Waiting for the runs in flight to finish; Ctrl-C again to stop now.")
            self._wait_for_runs()
        except KeyboardInterrupt:
            self.say("Stopped with runs in flight: the next start of byoi resumes them.")
            return STOPPED
        return 0


def main(app: App, user: str, banner: str | None, console: Console) -> int:
    interactive = sys.stdin.isatty()
    shell = Shell(app, user, console)
    if banner and interactive:
        shell.say(banner)
    if not interactive and banner:
        shell.say(banner.splitlines()[0])
    with interrupts.relayed():
        return shell.run(sys.stdin, interactive)


def user_id(typed: str) -> str | None:
    """``typed`` as a Slack user id (U… or W…, any case), or None if it cannot be one."""
    user = typed.upper()
    if not re.match(r"^[UW][A-Z0-9]{2,20}$", user) or not USER_REF.match(user):
        return None
    return user
