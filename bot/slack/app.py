"""The Bolt app: `/byoi`, the run and alert buttons and the App Home tab.

Every listener acknowledges first (Slack's 3 s), then calls the pipeline and renders the reply
with bot/slack/blocks/messages.py. Buttons carry only a run or alert id. ``guarded`` is where
Slack turns errors into replies: a UserError's message to the person who asked, anything else
into the log under a reference.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack import respond
from bot.slack.alertcards import AlertCards
from bot.slack.blocks import alerts as alertblocks
from bot.slack.blocks import messages
from bot.slack.blocks import roll as rollblocks
from bot.slack.blocks.kit import Block
from bot.slack.cards import Cards
from bot.slack.workqueue import BUSY, WorkQueue
from pipeline.config.model import Config
from pipeline.domain import commands
from pipeline.domain.alerts import Alert
from pipeline.errors import CommandError, UserError, logged
from pipeline.ports import Clock
from pipeline.services.caller import Caller
from pipeline.services.display import Display
from pipeline.services.replies import AlertsReply, Reply, RunReply
from pipeline.services.service import Service

log = logging.getLogger(__name__)


@dataclass
class Directory:
    """Slack user-group membership (S… ids named in byoi.yml), cached for a few minutes."""

    client: WebClient
    groups: frozenset[str]
    ttl: float = 300.0
    _cache: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_config(cls, client: WebClient, config: Config) -> Directory:
        refs = {
            ref
            for app in config.apps.values()
            for env in app.environments.values()
            for ref in (*env.operators, *env.approval.approvers)
            if ref.startswith("S")
        }
        return cls(client, frozenset(refs))

    def groups_of(self, user: str) -> frozenset[str]:
        return frozenset(g for g in self.groups if user in self._members(g))

    def _members(self, group: str) -> frozenset[str]:
        with self._lock:
            cached = self._cache.get(group)
            if cached and time.monotonic() - cached[0] < self.ttl:
                return cached[1]
        try:
            users = self.client.usergroups_users_list(usergroup=group).get("users") or []
        except SlackApiError as exc:
            log.warning("could not read members of user group %s: %s", group, exc)
            users = []
        members = frozenset(str(u) for u in users)
        with self._lock:
            self._cache[group] = (time.monotonic(), members)
        return members


@dataclass
class ListenerContext:
    """What the listeners use: the service, the cards, the directory, the post-ack workers."""

    service: Service
    display: Display
    cards: Cards
    directory: Directory
    clock: Clock
    alert_cards: AlertCards
    # The work after an ack runs here, a few at a time, so it never starves the next ack
    # (bench/ack_latency.py: 2 keeps p99 at or under a bare app's on 2 cores; serve raises
    # it from BYOI_WORKERS where most of the work is waiting on slow cloud APIs), behind a
    # bounded queue (BYOI_QUEUE) so that a burst is refused rather than done minutes later.
    work: WorkQueue = field(default_factory=WorkQueue)

    def later(self, work: Callable[[], None], respond: Respond | None, what: str = "") -> bool:
        """Queue the work after an ack; False when byoi is too busy (or stopping) to take it."""

        def guarded_work() -> None:
            with guarded(respond):
                work()

        tell = None
        if respond is not None:

            def tell(text: str) -> object:
                return respond(text=text, response_type="ephemeral", replace_original=False)

        return self.work.submit(guarded_work, tell, what)


def tell_busy(respond: Respond) -> None:
    """Say byoi is busy without holding up the ack (the answer goes out when we return)."""

    def say() -> None:
        with guarded(None):
            respond(text=f":hourglass: {BUSY}", response_type="ephemeral", replace_original=False)

    threading.Thread(target=say, name="tell-busy", daemon=True).start()


@contextmanager
def guarded(respond: Respond | None) -> Iterator[None]:
    """Where Slack turns errors into replies: a UserError tells the person what to fix;
    anything else goes to the log with its trace, and the person gets a short reference."""
    try:
        yield
    except UserError as error:
        _tell(respond, *messages.error_blocks(error))
    except Exception:  # noqa: BLE001 - logged() logs the trace
        ref = logged(log, "a Slack request")
        text = (
            f":warning: Something went wrong on byoi's side (reference {ref}). "
            "The details are in byoi's log."
        )
        _tell(respond, text, None)


def _tell(respond: Respond | None, text: str, blocks: list[Block] | None) -> None:
    """Say ``text`` to the person who asked, if anyone did; a failure to say it is logged."""
    if respond is None:
        return
    try:
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
    except Exception:
        log.exception("could not tell the user: %s", text)


def create_app(services: ListenerContext, client: WebClient, signing_secret: str | None) -> App:
    app = App(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=signing_secret is not None,
        token_verification_enabled=True,
        raise_error_for_unhandled_request=False,
        # Every listener only acks and hands its work to ListenerContext.later, so it can run in the
        # request's own thread: the answer goes out as soon as the listener returns, without
        # Bolt's hop to an executor and its 10 ms polling for the ack.
        process_before_response=True,
    )
    app.use(respond.middleware(respond.pool(services.work.workers)))
    register_commands(app, services)
    register_actions(app, services)
    register_events(app, services)
    return app


def _caller(services: ListenerContext, user: str, channel: str | None) -> Caller:
    return Caller(user, services.directory.groups_of(user), channel)


def deliver(services: ListenerContext, reply: Reply, respond: Respond) -> None:
    """Show a reply: runs on their card in the channel, everything else to the asker only."""
    now = services.clock()
    if isinstance(reply, AlertsReply) and reply.message:
        for alert in reply.alerts:
            services.alert_cards.update(alert)
    if isinstance(reply, RunReply) and reply.run is not None:
        run = services.display.run(reply.run.id) or reply.run
        if not run.shown_as:
            services.cards.on_post_error(
                run.id, lambda text: respond(text=text, response_type="ephemeral")
            )
        services.cards.run_changed(run)
        if reply.message:
            respond(text=reply.message, response_type="ephemeral", replace_original=False)
        return
    text, blocks = messages.reply_blocks(reply, now)
    respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)


def register_commands(app: App, services: ListenerContext) -> None:
    @app.command("/byoi")
    def byoi(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        user, channel = _text(command.get("user_id")), _text(command.get("channel_id"))
        if user is None:
            ack(text=f":warning: {NO_USER}", response_type="ephemeral")
            return
        try:
            parsed = commands.parse(str(command.get("text", "")))
        except CommandError as error:  # said in the ack, before any work is queued
            text, blocks = messages.error_blocks(error)
            ack(text=text, blocks=blocks, response_type="ephemeral")
            return

        def work() -> None:
            caller = _caller(services, user, channel)
            reply = services.service.dispatch(parsed, caller, services.clock())
            deliver(services, reply, respond)

        what = f"`/byoi {str(command.get('text', '')).strip()[:80]}`"
        if services.later(work, respond, what):
            ack()
        else:
            ack(text=f":hourglass: {BUSY}", response_type="ephemeral")


NO_USER = "byoi could not tell who sent this: Slack sent no user id. Nothing was done."


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _clicker(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    return _text(user.get("id")) if isinstance(user, dict) else None


def _clicked_id(body: dict[str, Any]) -> int | None:
    """The run or alert id a button carries, if it is a plausible one."""
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    value = str(action.get("value", "")) if isinstance(action, dict) else ""
    return int(value) if value.isascii() and value.isdigit() and len(value) < 12 else None


def _say(respond: Respond, text: str) -> None:
    respond(text=text, response_type="ephemeral", replace_original=False)


def _click_channel(body: dict[str, Any]) -> str | None:
    for key, name in (("channel", "id"), ("container", "channel_id")):
        part = body.get(key)
        if isinstance(part, dict) and _text(part.get(name)):
            return str(part[name])
    return None


RUN_BUTTONS = {
    messages.APPROVE: "approve",
    messages.REJECT: "reject",
    rollblocks.ROLL_CONTINUE: "continue",
    rollblocks.ROLL_BACK: "roll back",
}
ALERT_BUTTONS = {
    alertblocks.ALERT_REFRESH: "refresh",
    alertblocks.ALERT_SNOOZE: "snooze",
    alertblocks.ALERT_ROLL: "roll",
}


def register_actions(app: App, services: ListenerContext) -> None:
    for action_id, verb in RUN_BUTTONS.items():
        _on_button(app, services, action_id, f"{verb} of run", partial(run_clicked, services, verb))
    for action_id, verb in ALERT_BUTTONS.items():
        handle = partial(alert_clicked, services, verb)
        _on_button(app, services, action_id, f"{verb} of alert", handle)
    handle = partial(roll_offer_clicked, services)
    _on_button(app, services, rollblocks.ROLL_OFFER, "roll offer of run", handle)

    # Last: Bolt runs the first listener that matches. A button byoi does not know (a card
    # from another version, a hand-made payload) is acknowledged, so Slack shows no error,
    # and logged in one line instead of Bolt's 404 and its multi-line suggestion.
    @app.action(re.compile(".*"))
    def unknown_button(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        actions = body.get("actions")
        action = actions[0] if isinstance(actions, list) and actions else {}
        name = action.get("action_id") if isinstance(action, dict) else None
        log.info("ignored a click on a button byoi does not know: %s", str(name)[:80])


def run_clicked(
    services: ListenerContext, verb: str, body: dict[str, Any], respond: Respond
) -> None:
    """Approve, Reject, Continue or Roll back on a run's card."""
    run_id, user = _clicked_id(body), _clicker(body)
    if run_id is None or user is None:
        _say(respond, ":warning: " + NO_USER if user is None else "That button names no run.")
        return
    caller = _caller(services, user, _click_channel(body))
    try:
        reply = _RUN_VERBS[verb](services.service, run_id, caller, services.clock())
    finally:
        run = services.display.run(run_id)
        if run is not None and run.shown_as:
            services.cards.run_changed(run)  # the card shows what happened either way
    # The clicker always hears what their click did (recorded, already done; refused is raised).
    if reply.message:
        _say(respond, reply.message)


_RUN_VERBS: dict[str, Callable[[Service, int, Caller, datetime], RunReply]] = {
    "approve": Service.approve,
    "reject": Service.reject,
    "continue": Service.go_on,
    "roll back": Service.cancel,
}


def roll_offer_clicked(services: ListenerContext, body: dict[str, Any], respond: Respond) -> None:
    """Roll onto the image a refresh just published."""
    run_id = _clicked_id(body)
    run = services.display.run(run_id) if run_id is not None else None
    made = services.display.run_image(run_id) if run_id is not None else None
    if run is None or made is None:
        respond(text="That refresh made no image.", response_type="ephemeral")
        return
    caller = _caller(services, str(body["user"]["id"]), _click_channel(body))
    command = commands.Roll(run.app, run.env, image=made.image_id)
    deliver(services, services.service.dispatch(command, caller, services.clock()), respond)


def alert_clicked(
    services: ListenerContext, verb: str, body: dict[str, Any], respond: Respond
) -> None:
    """Refresh, Roll or Snooze on an alert card."""
    alert, user = _clicked_alert(services, body), _clicker(body)
    if alert is None or user is None:
        _say(respond, ":warning: " + NO_USER if user is None else "That alert no longer exists.")
        return
    caller = _caller(services, user, _click_channel(body))
    chosen: dict[str, commands.Command] = {
        "refresh": commands.Refresh(alert.app, alert.env),
        "roll": commands.Roll(alert.app, alert.env),
        "snooze": commands.Snooze(alert.id),
    }
    deliver(services, services.service.dispatch(chosen[verb], caller, services.clock()), respond)


def _on_button(
    app: App,
    services: ListenerContext,
    action_id: str,
    what: str,
    handle: Callable[[dict[str, Any], Respond], None],
) -> None:
    """A click is acknowledged at once; ``handle`` runs after, in the work queue (or the
    clicker hears byoi is busy). ``what`` names the click for a shutdown notice."""

    def clicked(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        if not services.later(
            lambda: handle(body, respond), respond, f"your {what} {_clicked_id(body)}"
        ):
            tell_busy(respond)

    app.action(action_id)(clicked)


def _clicked_alert(services: ListenerContext, body: dict[str, Any]) -> Alert | None:
    alert_id = _clicked_id(body)
    return services.display.alert(alert_id) if alert_id is not None else None


def register_events(app: App, services: ListenerContext) -> None:
    @app.event("app_home_opened")
    def home(ack: Ack, event: dict[str, Any], client: WebClient) -> None:
        ack()

        user = _text(event.get("user"))
        if user is None:
            log.warning("app_home_opened without a user; nothing to publish")
            return

        def publish() -> None:
            # Published whichever tab was opened, so the Home tab is current when it is shown.
            now = services.clock()
            status = services.service.views.status(None, now)
            images = services.service.views.images(None, now)
            client.views_publish(user_id=user, view=messages.home_view(status, images))

        if not services.later(publish, None):
            log.info("busy: the App Home of %s is published on its next opening", event["user"])
