"""The stale-image alert use cases that change state: snoozing an alert."""

from __future__ import annotations

from datetime import datetime

from pipeline.config.model import Config
from pipeline.domain import policy
from pipeline.domain.alerts import AlertState
from pipeline.errors import Refused, UserError
from pipeline.services.caller import Caller
from pipeline.services.replies import AlertsReply
from pipeline.state.store import Store


def snooze(
    config: Config, store: Store, alert_id: int, caller: Caller, now: datetime
) -> AlertsReply:
    alert = store.alerts.get(alert_id)
    if alert is None:
        raise UserError(f"There is no alert {alert_id}.")
    env = config.apps[alert.app].environments.get(alert.env) if (alert.app in config.apps) else None
    if env is None or not policy.is_member(
        caller.user,
        [*env.operators, *env.approval.approvers],
        config.groups,
        caller.groups,
    ):
        raise Refused(
            f"Only operators or approvers of {alert.app}/{alert.env} may snooze its alerts."
        )
    if alert.state == AlertState.RESOLVED:
        return AlertsReply((alert,), now, f"Alert {alert_id} is already resolved.")
    snoozed = store.alerts.snooze(alert_id, caller.user, now)
    if snoozed is None:
        raise UserError(f"There is no alert {alert_id}.")
    store.audit(now, None, caller.user, "alert_snoozed", f"alert {alert_id}")
    until = snoozed.snoozed_until.strftime("%Y-%m-%d") if snoozed.snoozed_until else "?"
    return AlertsReply((snoozed,), now, f"Alert {alert_id} snoozed until {until}.")
