"""The view model: the wording both surfaces show, decided once from the pipeline's models."""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.shell import text
from bot.slack.blocks import alerts as alertblocks
from bot.slack.blocks import messages
from bot.slack.blocks.kit import MRKDWN
from bot.views.alerts import alert_view
from bot.views.fleet import env_view, image_row
from bot.views.marks import PLAIN
from bot.views.runs import plan_view, run_view, slot_view
from bot.views.words import state_words, versions_line
from pipeline.domain.alerts import Alert, AlertState
from pipeline.domain.models import Run, RunKind, RunServer, RunState, ServerStatus, Step, Strategy
from pipeline.domain.staleness import Finding, FindingKind, Staleness
from pipeline.execution.scan import Observation
from pipeline.services.replies import EnvStatus, ImageView, Plan, ServerView
from providers.base import Image, Server, ServerState
from tests.conftest import START

ROOT = Path(__file__).parents[2]


def slot(n: int, status: ServerStatus, step: Step | None, **kw: str | None) -> RunServer:
    server = RunServer(7, n, f"byoi-k-7-{n}", status, step, None, False, None, None, None, START)
    return replace(server, **kw)


def a_run(kind: RunKind = RunKind.SCALE_UP, state: RunState = RunState.RUNNING) -> Run:
    slots = (
        slot(1, ServerStatus.PENDING, None),
        slot(2, ServerStatus.FAILED, Step.DEPLOY, provider_id="i-2", reason="exit 3"),
        slot(3, ServerStatus.DONE, Step.REGISTER, provider_id="i-3"),
    )
    return Run(
        7, kind, "web", "production", state, "UALICE", START, START, 2, 5, "img-1", "web-base",
        Strategy.PARALLEL, 5, "web-lb", 2, START + timedelta(minutes=30),
        image_created_at=START - timedelta(days=40), image_versions={"ruby_version": "3.1.2"},
        notes=("40 days old (limit 30)",), approvers=("UBOB",), servers=slots,
    )  # fmt: skip


def an_alert(finding: str = "age", state: AlertState = AlertState.OPEN) -> Alert:
    snoozed = START + timedelta(days=7) if state == AlertState.SNOOZED else None
    return Alert(
        3, "web", "production", "img-1", "web-base", finding, "45 days old", state,
        START - timedelta(days=3), START, snoozed, "UBOB" if snoozed else None, None, "C1", "1.2",
    )  # fmt: skip


def test_state_names_are_said_in_plain_words() -> None:
    assert state_words(RunState.AWAITING_APPROVAL) == "awaiting approval"
    assert state_words(RunState.PARTIALLY_FAILED) == "partially failed"
    assert state_words(ServerStatus.WORKING) == "working"
    assert state_words(AlertState.SNOOZED) == "snoozed"


def test_a_run_is_said_once_with_each_surface_marking_it_its_own_way() -> None:
    view = run_view(a_run(state=RunState.AWAITING_APPROVAL), START)

    assert view.action.headline() == "scale up web/production: 2 → 5"
    assert view.action.headline(MRKDWN) == "scale up *web/production*: 2 → 5"
    assert view.action.entry == "web/production scale up 2 → 5"
    assert view.state_words == "awaiting approval" and view.waiting
    assert view.approvals_missing == 1 and view.expires == "09:30 UTC"
    assert view.facts.image_age == "40 days old" and view.facts.versions == "ruby_version 3.1.2"
    assert view.facts.freshness.verdict("⚠") == "⚠ 40 days old (limit 30)"
    assert view.approved_by() == "approved by UBOB"
    assert view.approved_by(MRKDWN) == "approved by <@UBOB>"
    assert (view.done, view.failed) == (1, 1)


def test_without_now_or_a_creation_time_the_age_is_unknown() -> None:
    assert run_view(a_run()).facts.image_age == "age unknown"
    unknown = run_view(replace(a_run(), image_created_at=None), START)
    assert unknown.facts.image_age == "age unknown"


def test_a_server_before_its_first_step_is_waiting_and_failed_at_the_start() -> None:
    waiting, failed, _ = (slot_view(s) for s in a_run().servers)

    assert (waiting.name, waiting.step_words, waiting.failed_at) == (
        "byoi-k-7-1",
        "waiting",
        "start",
    )
    assert (failed.name, failed.step_words, failed.failed_at) == ("i-2", "deploy", "deploy")


def test_a_prune_counts_images_everywhere() -> None:
    run = a_run(RunKind.PRUNE)

    assert run_view(run).action.unit == "image(s)"
    assert "2 → 5 image(s)" in str(messages.run_card(run, START))
    assert "2 → 5 image(s)" in str(messages.plan_blocks(a_plan(RunKind.PRUNE), START))
    assert "2 → 5 image(s)" in text.plan_text(a_plan(RunKind.PRUNE), None)


def a_plan(kind: RunKind, *removals: str) -> Plan:
    image = Image("img-9", "web-9", START, versions={"b": "2", "a": "1"})
    servers = tuple(Server(s, s, "img-1", ServerState.RUNNING, START) for s in removals)
    staleness = Staleness(12, (Finding(FindingKind.AGE, "12 days old"),))
    return Plan(
        "web", "production", kind, 2, 5, image, staleness, Strategy.SERIAL, "web-lb", "UALICE",
        0, (), servers, True, (image,), 2, True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "removals", "scope"),
    [
        (RunKind.SCALE_UP, (), None),
        (RunKind.SCALE_DOWN, ("s-1", "s-2"), ("removes", "s-1, s-2 (oldest image first)")),
        (RunKind.REFRESH, ("s-1",), ("source", "s-1 (snapshot into a new image)")),
        (RunKind.PRUNE, (), ("deletes", "web-9 (img-9)")),
        (
            RunKind.ROLL,
            ("s-1", "s-2"),
            (
                "replaces",
                "2 server(s) in batches of 2, surge first · canary first, then pause: s-1, s-2",
            ),
        ),
    ],
)
def test_a_plan_says_what_it_does_beyond_its_counts(
    kind: RunKind, removals: tuple[str, ...], scope: tuple[str, str] | None
) -> None:
    view = plan_view(a_plan(kind, *removals))

    assert view.scope == scope
    assert view.removals == removals
    assert view.facts.versions == "a 1, b 2" and view.facts.image_age == "12 days old"
    assert view.facts.freshness.verdict() == "12 days old" and view.run is None


def test_an_alert_says_what_fixes_it() -> None:
    aged, fleet = alert_view(an_alert()), alert_view(an_alert("fleet"))

    assert (aged.title, aged.fix, aged.rolls) == ("too old", "refresh web --env production", False)
    assert (fleet.title, fleet.fix, fleet.rolls) == (
        "not what the fleet runs",
        "roll web --env production",
        True,
    )
    assert aged.snooze == "snooze 3" and aged.days_open(START) == 3 and aged.open
    assert alert_view(an_alert(finding="new")).title == "new"
    assert alertblocks.alert_fallback(an_alert()) == (
        "Stale image for web/production: web-base (age: 45 days old) · open"
    )


def test_a_snoozed_alert_says_until_when_and_a_resolved_one_when() -> None:
    snoozed = alert_view(an_alert(state=AlertState.SNOOZED))
    resolved = alert_view(an_alert(state=AlertState.RESOLVED))

    assert snoozed.standing == "snoozed until 2026-11-09" and snoozed.snoozed_by == "UBOB"
    assert resolved.standing == "resolved" and resolved.resolved == "now"


def test_an_environment_says_its_servers_trouble_and_the_servers_it_leaves_alone() -> None:
    server = Server("i-1", "web-1", "img-1", ServerState.RUNNING, START)
    other = Server("i-9", "x", "img-1", ServerState.RUNNING, START, tags={"byoi:app": "web"})
    env = EnvStatus("web", "production", (ServerView(server, "web-base", 4, {"a": "1"}),),
                    a_run(), "throttled", (other,))  # fmt: skip
    view = env_view(env)

    assert view.where == "web/production" and view.count == "1 server(s)"
    assert view.trouble == "could not list servers: throttled"
    assert view.unmanaged() == "not managed here: 1 server(s), never touched"
    assert [(r.id, r.state, r.age_days, r.versions) for r in view.servers] == [
        ("i-1", "running", 4, "a 1")
    ]
    assert view.active is not None and view.active.in_flight == "run 7 running"


def test_an_image_is_fresh_or_says_what_is_wrong_after_a_surface_sign() -> None:
    image = Image("img-9", "web-9", START, versions={"a": "1"})
    stale = Staleness(12, (Finding(FindingKind.DRIFT, "a 1 → <2>"),))
    row = image_row(ImageView("web", "production", "family:web", image, stale, {"a": "2"}))
    fresh = image_row(Observation("web", "staging", "family:web", None, image, Staleness(1, ())))
    missing = image_row(ImageView("web", "qa", "family:web", None, None, error="not found"))

    assert row.freshness.verdict() == "a 1 → <2>" and row.freshness.verdict("⚠") == "⚠ a 1 → <2>"
    assert row.freshness.verdict(":warning:", MRKDWN) == ":warning: a 1 → &lt;2&gt;"
    assert (row.recorded, row.declared, row.age) == ("a 1", "a 2", "12 days old")
    assert fresh.freshness.verdict("⚠", PLAIN) == "fresh" and fresh.declared == "none recorded"
    assert missing.name is None and missing.error == "not found"


def test_both_surfaces_show_the_same_words_of_a_run() -> None:
    run = a_run(state=RunState.PARTIALLY_FAILED)
    view = run_view(run, START)
    shell = text.run_text(run)
    slack = str(messages.run_card(run, START)) + messages.run_summary(run)

    for words in (view.state_words, view.action.verb, view.action.counts):
        assert words in shell and words in slack
    assert versions_line(run.image_versions) in slack
    assert messages.fallback_text(run) == (
        "Run 7: scale up web/production 2 → 5 (partially failed)"
    )
    rolling = a_run(state=RunState.RUNNING, kind=RunKind.ROLL)
    assert messages.fallback_text(rolling, paused=True).endswith("(paused after the canary)")


def test_state_names_are_turned_into_words_in_one_place_only() -> None:
    pattern = re.compile(r"""\.replace\(\s*["']_["']\s*,\s*["'] ["']\s*\)""")
    found = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "bot").rglob("*.py")
        if pattern.search(p.read_text())
    ]

    assert found == ["bot/views/words.py"]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "bot" / "views").glob("*.py")), ids=lambda p: p.name
)
def test_the_view_model_imports_neither_surface_nor_an_sdk(path: Path) -> None:
    imported = {
        node.module
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    wrong = {
        n for n in imported if n.startswith(("bot.shell", "bot.slack", "slack", "providers.local"))
    }

    assert not wrong, wrong
