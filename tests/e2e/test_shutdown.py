"""`byoi serve` stops within its deadline whatever it is doing, and the next start resumes."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import config_text
from tests.e2e.slackbot import TGKILL, Bot, free_port, running_bot, serving
from tests.fakes.slack_api import FakeSlack, text_of

DEADLINE = 6.0


def slow_deploy(marker: Path) -> str:
    """A deploy that takes 30 s while ``marker`` exists; one that saw it leaves a file beside
    it (``<marker>.<server key>``) before its sleep."""
    return config_text(
        operators='["W111", "UALICE"]',
        approvers='["UBOB", "UCAROL"]',
        deploy_command=repr(
            f"if [ -e {marker} ]; then touch {marker}.$BYOI_SERVER; sleep 30; fi; "
            'mkdir -p current && echo "$BYOI_RELEASE" > current/VERSION'
        ),
    )


def wait_event(bot: Bot, event: str) -> None:
    bot.fake.wait_for(lambda: any(e == event for _, e in bot.events()))


def deploying(bot: Bot, servers: int) -> None:
    """Request and approve run 1 of ``servers`` servers, and wait until their deploys are in
    their sleep (``slow_deploy`` with the marker ``slow`` in the bot's root): recorded as
    started is not yet running, and a marker taken away before would not be seen."""
    bot.command(f"scale web {servers}")
    bot.fake.wait_for(lambda: bot.fake.sent("chat.postMessage"))
    bot.click("run_approve", 1, "UBOB")
    wait_event(bot, "deploy_started")
    bot.fake.wait_for(lambda: len(list(bot.root.glob("slow.*"))) >= servers)


def test_an_idle_byoi_exits_within_two_seconds_of_sigterm(tmp_path: Path) -> None:
    with running_bot(tmp_path) as bot:
        seconds = bot.sigterm()

    assert bot.process.returncode == 0
    assert seconds < 2.0, bot.logs()


def test_sigusr1_writes_every_threads_stack_to_the_log_and_byoi_carries_on(
    tmp_path: Path,
) -> None:
    with running_bot(tmp_path) as bot:
        bot.process.send_signal(signal.SIGUSR1)
        bot.fake.wait_for(lambda: "in wait_for_stop" in bot.logs())
        status, body, _ = bot.command("help")
        assert status == 200, body
        assert bot.process.poll() is None
        seconds = bot.sigterm()
    assert bot.process.returncode == 0
    assert seconds < 2.0
    log = bot.logs()
    assert "Thread 0x" in log and "line " in log, log


def test_a_busy_byoi_exits_within_its_deadline_and_the_next_start_resumes(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "slow"
    marker.touch()
    fake = FakeSlack()
    env = {"BYOI_SHUTDOWN_SECONDS": str(DEADLINE)}
    with running_bot(tmp_path, slow_deploy(marker), env=env, fake=fake) as bot:
        deploying(bot, 2)
        # Slack is rate-limiting everything now, as in the field report.
        for method in ("chat.update", "chat.postMessage"):
            fake.fail(method, 429, times=10_000, retry_after=30)

        seconds = bot.sigterm()
        assert seconds < DEADLINE + 1.5, bot.logs()
        assert "the next start resumes" in bot.logs()
        db = sqlite3.connect(tmp_path / "byoi.db")
        (state,) = db.execute("SELECT state FROM runs WHERE id = 1").fetchone()
        db.close()
        assert state == "running"  # paused, not failed

        marker.unlink()
        fake.heal()
        with serving(tmp_path, fake, env, log_name="serve2.log"):
            fake.wait_for(
                lambda: any("succeeded" in text_of(c) for c in fake.sent("chat.update")),
                timeout=60,
            )
    servers = list((tmp_path / "local/servers").glob("*/server.json"))
    assert len(servers) == 2


@pytest.mark.parametrize("to", ["the process", "a worker thread"])
def test_a_second_sigterm_during_a_shutdown_exits_at_once(tmp_path: Path, to: str) -> None:
    """The kernel may hand a process's signal to any thread (``a worker thread`` aims it there
    with tgkill); the main thread, waiting for the shutdown, must still run the handler."""
    if to == "a worker thread" and TGKILL is None:
        pytest.skip("tgkill's number is not known on this machine")
    marker = tmp_path / "slow"
    marker.touch()
    env = {"BYOI_SHUTDOWN_SECONDS": "20"}
    with running_bot(tmp_path, slow_deploy(marker), env=env) as bot:
        deploying(bot, 1)
        bot.process.terminate()  # the shutdown waits up to 18 s for the deploy
        bot.fake.wait_for(lambda: "SIGTERM received: shutting down" in bot.logs())
        seconds = bot.sigterm() if to == "the process" else bot.sigterm_to_a_thread()

    assert bot.process.returncode == 143
    assert seconds < 2.0, bot.logs()  # the main thread runs the handler within 0.5 s


def test_a_run_left_by_a_stopping_byoi_is_carried_on_by_one_started_beside_it(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "slow"
    marker.touch()
    fake = FakeSlack()
    env = {"BYOI_SHUTDOWN_SECONDS": "12", "BYOI_HOUSEKEEPING_SECONDS": "1"}
    with running_bot(tmp_path, slow_deploy(marker), env=env, fake=fake) as old:
        deploying(old, 2)
        old.process.terminate()  # it holds the run while its deploys get their ~10 s
        marker.unlink()
        with serving(tmp_path, fake, env, log_name="serve2.log"):
            assert old.process.poll() is None  # the new one started beside the stopping one
            old.process.wait(30)

            def state() -> str:
                db = sqlite3.connect(tmp_path / "byoi.db")
                try:
                    return str(db.execute("SELECT state FROM runs WHERE id = 1").fetchone()[0])
                finally:
                    db.close()

            fake.wait_for(lambda: state() == "succeeded", timeout=60)
    db = sqlite3.connect(tmp_path / "byoi.db")
    resumed = db.execute("SELECT detail FROM audit WHERE event = 'resumed'").fetchall()
    db.close()
    # Taken over by the new one's housekeeping once the old one exited, not at its start-up.
    assert resumed == [("left by another byoi process",)]
    servers = list((tmp_path / "local/servers").glob("*/server.json"))
    assert len(servers) == 2


def test_a_burst_past_the_queue_gets_busy_acks_and_no_backlog_after_sigterm(
    tmp_path: Path,
) -> None:
    fake = FakeSlack()
    fake.delays["respond"] = 0.5  # every reply takes a while: the one worker stays busy
    env = {"BYOI_WORKERS": "1", "BYOI_QUEUE": "3", "BYOI_SHUTDOWN_SECONDS": str(DEADLINE)}
    with running_bot(tmp_path, env=env, fake=fake) as bot:
        barrier = threading.Barrier(30)

        def send(n: int) -> str:
            barrier.wait()
            status, body, seconds = bot.command("history", user=f"U{n:03d}")
            assert status == 200 and seconds < 3
            return body

        with ThreadPoolExecutor(30) as pool:
            bodies = list(pool.map(send, range(30)))
        seconds = bot.sigterm()

    busy = [b for b in bodies if "byoi is busy, try again in a moment" in b]
    accepted = len(bodies) - len(busy)
    assert busy and accepted >= 1
    assert accepted <= 1 + 3  # the worker and the queue
    assert seconds < DEADLINE + 1.5
    replies = [c.params["text"] for c in fake.sent("respond")]
    not_done = [r for r in replies if "did not carry out" in r or "check `/byoi status`" in r]
    done = [r for r in replies if r not in not_done]
    # Every accepted command was either carried out or its caller was told it was not.
    assert len(done) + len(not_done) == accepted, replies
    calls = len(fake.calls)
    assert len(fake.calls) == calls  # nothing after the exit: no backlog


def test_slack_unreachable_at_start_is_waited_for_with_one_clear_log_line(
    tmp_path: Path,
) -> None:
    from tests.conftest import make_world, today
    from tests.e2e.slackbot import SLACK_CONFIG, _wait_healthy

    make_world(tmp_path, SLACK_CONFIG, now=today()).store.close()
    port = free_port()
    fake = FakeSlack()
    env = {"SLACK_API_URL": f"http://127.0.0.1:{port}/api/"}
    with serving(tmp_path, fake, env, wait_healthy=False) as bot:
        fake_wait = FakeSlack()  # only for its wait_for
        fake_wait.wait_for(lambda: "waiting for the Slack API" in bot.logs())
        try:
            urllib.request.urlopen(f"{bot.url}/healthz", timeout=5)
            raise AssertionError("healthz said ready while Slack is unreachable")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert json.loads(exc.read())["waiting_for"] == "the Slack API"
        assert bot.process.poll() is None  # still running, no traceback

        fake.start(port)  # Slack answers now
        try:
            _wait_healthy(bot)
            status, _, _ = bot.command("history")
            assert status == 200
            fake.wait_for(lambda: fake.sent("respond"))
        finally:
            fake.stop()
    log = bot.logs()
    assert log.count("waiting for the Slack API") == 1
    assert "Traceback" not in log
