"""The door every front end calls: ``Service.handle(text, caller, now)`` (or ``dispatch`` for a
command already parsed, from a button) runs the use case and returns the Reply to render.

What goes wrong is raised: a UserError (pipeline/errors.py) says what to fix; each edge turns
it into a reply in one place. The use cases themselves live beside this module.
"""

from __future__ import annotations

from datetime import datetime

from pipeline.config.model import Config
from pipeline.domain import commands as cmd
from pipeline.domain.models import Run
from pipeline.execution.runner import Runner
from pipeline.ports import ProviderFor
from pipeline.services import alerts, approvals, lifecycle, scale
from pipeline.services.caller import Caller
from pipeline.services.context import Context
from pipeline.services.replies import AlertsReply, HelpReply, InfoReply, Reply, RunReply
from pipeline.services.views import Views
from pipeline.state.store import Store


class Service:
    """Plans and changes runs; the read-only answers come from ``views``."""

    def __init__(
        self, *, config: Config, store: Store, provider_for: ProviderFor, runner: Runner
    ) -> None:
        self._ctx = Context(config, store, provider_for, runner)
        self.views = Views(self._ctx)

    def handle(self, text: str, caller: Caller, now: datetime) -> Reply:
        """The reply to a typed command; raises CommandError when ``text`` is not one."""
        return self.dispatch(cmd.parse(text), caller, now)

    def dispatch(self, command: cmd.Command, caller: Caller, now: datetime) -> Reply:
        match command:
            case cmd.Help(topic):
                return _help(topic)
            case cmd.Scale():
                return scale.scale(self._ctx, command, caller, now)
            case cmd.Approve(run_id):
                return self.approve(run_id, caller, now)
            case cmd.Reject(run_id):
                return self.reject(run_id, caller, now)
            case cmd.Cancel(run_id):
                return self.cancel(run_id, caller, now)
            case cmd.Status(app):
                return self.views.status(app, now)
            case cmd.Images(app):
                return self.views.images(app, now)
            case cmd.History(app):
                return self.views.history(app)
            case cmd.Refresh():
                return self.refresh(command, caller, now)
            case cmd.Roll():
                return self.roll(command, caller, now)
            case cmd.Continue(run_id):
                return self.go_on(run_id, caller, now)
            case cmd.Prune():
                return lifecycle.prune(self._ctx, command, caller, now)
            case cmd.Alerts(app):
                return self.views.alerts(app, now)
            case cmd.Snooze(alert_id):
                return self.snooze(alert_id, caller, now)
        raise TypeError(f"not a command: {command!r}")

    def approve(self, run_id: int, caller: Caller, now: datetime) -> RunReply:
        return approvals.approve(self._ctx, run_id, caller, now)

    def reject(self, run_id: int, caller: Caller, now: datetime) -> RunReply:
        return approvals.reject(self._ctx, run_id, caller, now)

    def cancel(self, run_id: int, caller: Caller, now: datetime) -> RunReply:
        return approvals.cancel(self._ctx, run_id, caller, now)

    def expire_due(self, now: datetime) -> list[Run]:
        """Expire pending approvals whose time is up; returns the runs that expired."""
        return approvals.expire_due(self._ctx, now)

    def refresh(self, command: cmd.Refresh, caller: Caller, now: datetime) -> RunReply:
        return lifecycle.refresh(self._ctx, command, caller, now)

    def roll(self, command: cmd.Roll, caller: Caller, now: datetime) -> RunReply | InfoReply:
        return lifecycle.roll_onto(self._ctx, command, caller, now)

    def go_on(self, run_id: int, caller: Caller, now: datetime) -> RunReply:
        return lifecycle.go_on(self._ctx, run_id, caller, now)

    def snooze(self, alert_id: int, caller: Caller, now: datetime) -> AlertsReply:
        return alerts.snooze(self._ctx.config, self._ctx.store, alert_id, caller, now)


def _help(topic: str | None) -> HelpReply:
    names = [topic] if topic else list(cmd.USAGE)
    return HelpReply(tuple((cmd.USAGE[n], cmd.SUMMARY[n]) for n in names))
