"""The shell prints from one place: whole messages, in order, never a step going backwards."""

from __future__ import annotations

import io
import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest

from bot.shell import text
from bot.shell.console import Console, Shell, TextNotifier
from bot.wiring import App, Providers
from pipeline.domain.commands import USAGE
from pipeline.domain.models import Run, RunKind, RunServer, RunState, ServerStatus, Step, Strategy
from pipeline.services.display import Display
from tests.conftest import START, World, make_world


def a_run(status: ServerStatus, step: Step | None, state: RunState = RunState.RUNNING) -> Run:
    server = RunServer(1, 1, "byoi-k-1-1", status, step, "srv-1", False, None, None, None, START)
    return Run(
        id=1,
        kind=RunKind.SCALE_UP,
        app="web",
        env="staging",
        state=state,
        requester="UALICE",
        created_at=START,
        updated_at=START,
        current=0,
        desired=1,
        image_id="img-1",
        image_name="web-base",
        strategy=Strategy.PARALLEL,
        max_parallel=5,
        target="web-lb",
        approvals_needed=0,
        expires_at=None,
        servers=(server,),
    )


def test_a_late_snapshot_never_shows_a_step_going_backwards() -> None:
    out = io.StringIO()
    notifier = TextNotifier(Console(out))

    notifier.run_changed(a_run(ServerStatus.WORKING, Step.REGISTER))
    notifier.run_changed(a_run(ServerStatus.DONE, Step.REGISTER))
    notifier.run_changed(a_run(ServerStatus.WORKING, Step.REGISTER))  # arrived late
    notifier.run_changed(a_run(ServerStatus.WORKING, Step.DEPLOY))  # later still
    notifier.run_changed(a_run(ServerStatus.DONE, Step.REGISTER, RunState.SUCCEEDED))
    notifier.run_changed(a_run(ServerStatus.DONE, Step.REGISTER, RunState.RUNNING))

    lines = out.getvalue().splitlines()
    steps = [line.split()[-2:] for line in lines if line.startswith(("[run 1] …", "[run 1] ✓"))]
    assert steps == [["register", "working"], ["register", "done"]]
    finished = lines.index("  state     succeeded")
    assert "[run 1] running" not in lines[finished:]
    assert sum(line == "  state     succeeded" for line in lines) == 1


def test_steps_show_in_the_order_a_new_server_takes_them_with_each_report_before_the_next() -> None:
    out = io.StringIO()
    notifier = TextNotifier(Console(out))

    def at(status: ServerStatus, step: Step, note: str | None = None) -> Run:
        run = a_run(status, step)
        return replace(run, servers=(replace(run.servers[0], note=note),))

    notifier.run_changed(at(ServerStatus.WORKING, Step.DEPLOY))
    notifier.run_changed(at(ServerStatus.WORKING, Step.PROBE, "deploy: release v2"))
    notifier.run_changed(at(ServerStatus.WORKING, Step.REGISTER, "measured ruby_version 3.2.2"))
    notifier.run_changed(at(ServerStatus.DONE, Step.REGISTER, "health: ok"))

    said = [line.removeprefix("[run 1]").split() for line in out.getvalue().splitlines()]
    shown = [words[-2] if words[0] in "…✓" else words[1] for words in said if len(words) > 1]
    # Probe comes after register among the steps' names, but a new server probes first.
    assert shown == ["deploy", "deploy:", "probe", "measured", "register", "health:", "register"]


def test_a_resumed_runs_first_snapshot_says_it_runs_before_its_servers_progress() -> None:
    out = io.StringIO()
    notifier = TextNotifier(Console(out))

    notifier.run_changed(a_run(ServerStatus.WORKING, Step.DEPLOY))

    assert out.getvalue().splitlines()[0] == "[run 1] running"


def test_a_server_shown_done_and_rolled_back_later_is_shown_again() -> None:
    out = io.StringIO()
    notifier = TextNotifier(Console(out))

    notifier.run_changed(a_run(ServerStatus.DONE, Step.REGISTER))
    notifier.run_changed(a_run(ServerStatus.CANCELLED, Step.REGISTER))  # its batch rolled back
    notifier.run_changed(a_run(ServerStatus.DONE, Step.REGISTER))  # a late snapshot

    lines = out.getvalue().splitlines()
    assert [line.split()[-1] for line in lines if "srv-1" in line] == ["done", "cancelled"]


def test_servers_skipped_at_once_are_counted_in_one_line_not_listed() -> None:
    out = io.StringIO()
    notifier = TextNotifier(Console(out))
    run = a_run(ServerStatus.FAILED, Step.DEPLOY)
    (failed,) = run.servers
    skipped = [
        replace(
            failed,
            slot=n,
            key=f"byoi-k-1-{n}",
            status=ServerStatus.SKIPPED,
            step=None,
            provider_id=None,
            reason="not started: roll stopped",
        )
        for n in range(2, 52)
    ]

    notifier.run_changed(replace(run, servers=(failed, *skipped)))

    lines = out.getvalue().splitlines()
    assert "[run 1]     50 server(s) skipped · not started: roll stopped" in lines
    assert not any("byoi-k-1-2 " in line or "byoi-k-1-51" in line for line in lines)
    assert any("srv-1" in line or "byoi-k-1-1" in line for line in lines)  # the failure is shown


def test_a_few_skipped_servers_are_still_listed_one_by_one() -> None:
    out = io.StringIO()
    notifier = TextNotifier(Console(out))
    run = a_run(ServerStatus.SKIPPED, None)

    notifier.run_changed(replace(run, servers=(replace(run.servers[0], reason="not started"),)))

    assert "skipped" in out.getvalue() and "server(s) skipped" not in out.getvalue()


def test_a_commands_answer_comes_before_what_it_set_off() -> None:
    out = io.StringIO()
    console = Console(out)

    with console.answer_first():
        runner = threading.Thread(target=console.say, args=("[run 1] running",))
        runner.start()
        runner.join()
        console.say("Approved by UBOB; starting.")
    console.say("[run 1] … clone working")

    assert out.getvalue().splitlines() == [
        "Approved by UBOB; starting.",
        "[run 1] running",
        "[run 1] … clone working",
    ]


def test_messages_from_many_threads_never_interleave() -> None:
    out = io.StringIO()
    console = Console(out)
    notifier = TextNotifier(console)
    messages = {f"reply {n}": "\n".join(f"reply {n} line {i}" for i in range(5)) for n in range(8)}

    def reply(name: str) -> None:
        for _ in range(50):
            console.say(messages[name])

    def progress(slot: int) -> None:
        for step in (Step.CLONE, Step.SCRUB, Step.DEPLOY, Step.REGISTER) * 10:
            run = a_run(ServerStatus.WORKING, step)
            notifier.run_changed(
                replace(run, id=slot, servers=(replace(run.servers[0], run_id=slot),))
            )

    threads = [threading.Thread(target=reply, args=(n,)) for n in messages]
    threads += [threading.Thread(target=progress, args=(slot,)) for slot in range(2, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = out.getvalue().splitlines()
    for index, line in enumerate(lines):
        if line.endswith("line 0"):
            name = line.removesuffix(" line 0")
            assert lines[index : index + 5] == messages[name].splitlines()
    assert sum(line.endswith("line 4") for line in lines) == 8 * 50


def test_as_names_what_is_wrong_with_the_user() -> None:
    out = io.StringIO()
    shell = Shell(cast(App, None), "UALICE", Console(out))

    shell.line("as bob")
    shell.line("as")
    shell.line("as ubob")

    assert out.getvalue().splitlines() == [
        "✗ `bob` is not a Slack user id (U… or W… and letters or digits, for example `as UBOB`).",
        "✗ Give one user id, for example `as UBOB`.",
        "You are now UBOB.",
    ]
    assert shell.user == "UBOB"


def test_a_fresh_image_is_said_to_be_fresh(world: World) -> None:
    plan = text.render(world.say("scale web 2 --dry-run"))  # type: ignore[arg-type]

    assert "  staleness fresh" in plan.splitlines()


def a_shell(world: World, out: io.StringIO) -> Shell:
    app = App(
        world.config,
        world.store,
        cast(Providers, None),
        world.runner,
        world.service,
        Display(world.store),
        world.clock,
    )
    return Shell(app, "UALICE", Console(out))


def test_what_a_person_can_fix_is_said_with_the_usage_and_the_shell_goes_on(world: World) -> None:
    out = io.StringIO()
    shell = a_shell(world, out)

    assert shell.line("scale nope 2") and shell.line("approve 7") and shell.line("whoami")

    assert out.getvalue().splitlines() == [
        "✗ Unknown app `nope` (apps: web).",
        "  usage: /byoi " + USAGE["scale"],
        "✗ There is no run 7.",
        "You are UALICE.",
    ]


def test_an_internal_error_is_said_by_its_reference_and_logged_with_the_trace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(tmp_path / "w")
    out = io.StringIO()
    shell = a_shell(world, out)
    world.store.close()  # every read now fails inside byoi, not in anything the user typed

    assert shell.line("history")

    said = out.getvalue().strip()
    found = re.fullmatch(
        r"✗ internal error \(reference ([0-9a-f]{6})\); the details are in byoi's log\.", said
    )
    assert found is not None, said
    logged = [r for r in caplog.records if found.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_the_scan_tables_columns_line_up_whatever_the_image_names(world: World) -> None:
    world.provider.create_image(
        "web-base-with-a-name-far-longer-than-the-column-once-was",
        {},
        family="web",
        versions={"ruby_version": "3.2.2"},
        created_at=START,
    )

    table = text.render(world.service.views.scan(world.clock())).splitlines()

    header, *rows = [line for line in table if line.startswith(("app/env", "web/"))]
    assert len(rows) == 2, table
    findings = {header.index("findings")} | {row.index("d  ") + 3 for row in rows}
    assert len(findings) == 1, table  # one column, the header's
