"""GET /metrics after a real run (HTTP and Socket Mode), JSON logs, /healthz in Socket Mode."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.server import ServerConnection, serve

from tests.e2e.slackbot import Bot, free_port, running_bot
from tests.e2e.test_slack_socket_mode import click_envelope, slash_envelope
from tests.fakes.slack_api import FakeSlack, text_of

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ALLOWED_LABELS = {"kind", "outcome", "state", "provider", "step", "method", "reason", "app", "env"}
ALLOWED_LABELS |= {"image_age", "le"}
STEPS = ("clone", "scrub", "deploy", "probe", "register")


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_metrics(url: str, ready: Callable[[Samples], bool], timeout: float = 30) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def slack_calls_match(samples: Samples, fake: FakeSlack, method: str) -> bool:
    counted = value(samples, "byoi_slack_api_calls_total", method=method, outcome="ok")
    return counted == len(fake.sent(method))


def assert_run_metrics(samples: Samples, servers: int) -> None:
    assert value(samples, "byoi_runs_total", kind="scale_up", outcome="succeeded") == 1
    assert value(samples, "byoi_runs_total", kind="scale_up", outcome="failed") == 0
    assert value(samples, "byoi_approvals_waiting") == 0
    run = {"provider": "local", "kind": "scale_up", "outcome": "succeeded"}
    assert value(samples, "byoi_run_duration_seconds_count", **run) == 1
    for step in STEPS:
        labels = {"provider": "local", "step": step, "outcome": "ok"}
        assert value(samples, "byoi_step_duration_seconds_count", **labels) == servers, step
    fleet = {
        dict(labels)["image_age"]: n
        for (name, labels), n in samples.items()
        if name == "byoi_servers" and {("app", "web"), ("env", "staging")} <= labels
    }
    assert sum(fleet.values()) == servers and set(fleet) <= {"0-7d", "7-30d"}, fleet
    assert value(samples, "byoi_alerts_open", app="web") == 0
    labels_used = {name for (_, labels) in samples for name, _ in labels}
    assert labels_used <= ALLOWED_LABELS, labels_used - ALLOWED_LABELS


@dataclass
class HttpRun:
    bot: Bot
    samples: Samples
    log_lines: list[str]


@pytest.fixture(scope="module")
def http_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpRun]:
    """One scale-up of 2 servers over HTTP, with two 429s on chat.update and JSON logs."""
    root = tmp_path_factory.mktemp("http-metrics")
    fake = FakeSlack()
    env = {"BYOI_LOG_FORMAT": "json", "BYOI_LOG_LEVEL": "INFO"}
    with running_bot(root, env=env, fake=fake) as bot:
        bot.command("scale web 2")
        fake.wait_for(lambda: fake.sent("chat.postMessage"))
        fake.fail("chat.update", 429, times=2, retry_after=1)
        bot.click("run_approve", 1, "UBOB")
        fake.wait_for(
            lambda: [c for c in fake.sent("chat.postMessage") if "succeeded" in text_of(c)]
        )

        def settled(s: Samples) -> bool:
            run = value(
                s,
                "byoi_run_duration_seconds_count",
                provider="local",
                kind="scale_up",
                outcome="succeeded",
            )
            methods = ("chat.postMessage", "chat.update")
            return run == 1 and all(slack_calls_match(s, fake, m) for m in methods)

        samples = wait_metrics(bot.url, settled)
        yield HttpRun(bot, samples, bot.logs().splitlines())


def test_metrics_after_a_run_over_http(http_run: HttpRun) -> None:
    samples, fake = http_run.samples, http_run.bot.fake

    assert_run_metrics(samples, servers=2)
    limited = [c for c in fake.sent("chat.update", ok_only=False) if c.status == 429]
    assert len(limited) == 2
    assert value(samples, "byoi_slack_api_rate_limited_total", method="chat.update") == 2
    retried = {"method": "chat.update", "reason": "rate_limited"}
    assert value(samples, "byoi_slack_api_retries_total", **retried) == 2
    for method in ("chat.postMessage", "chat.update", "auth.test"):
        assert slack_calls_match(samples, fake, method), method
    assert value(samples, "byoi_post_ack_queue_depth") == 0
    assert value(samples, "byoi_runs_active", kind="scale_up", state="running") == 0


def test_json_logs_are_one_object_per_line(http_run: HttpRun) -> None:
    records = [json.loads(line) for line in http_run.log_lines]  # every line parses

    assert records
    for record in records:
        keys = {"time", "level", "logger", "run", "app", "env", "step", "message"}
        assert keys <= set(record), record
    steps = [r for r in records if r["logger"] == "byoi.runs" and r["step"]]
    assert {r["step"] for r in steps} == set(STEPS)
    assert all(r["run"] == 1 and r["app"] == "web" and r["env"] == "staging" for r in steps)
    assert any("listening on" in r["message"] for r in records)
    assert not any("will be unused" in r["message"] for r in records)  # Bolt: client and token


@dataclass
class SocketSlack:
    """A local Socket Mode endpoint: sends queued envelopes, keeps the acks."""

    outgoing: queue.Queue[str]
    acks: list[dict[str, object]]

    def handler(self, connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "hello", "num_connections": 1}))
        while True:
            with contextlib.suppress(queue.Empty):
                connection.send(self.outgoing.get_nowait())
            try:
                self.acks.append(json.loads(connection.recv(timeout=0.05)))
            except TimeoutError:
                continue
            except Exception:
                return


def health(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def test_metrics_and_health_in_socket_mode(tmp_path: Path) -> None:
    slack = SocketSlack(queue.Queue(), [])
    side_port = free_port()
    side = f"http://127.0.0.1:{side_port}"
    with serve(slack.handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        fake = FakeSlack(socket_url=f"ws://127.0.0.1:{server.socket.getsockname()[1]}/link")
        env = {
            "SLACK_APP_TOKEN": "xapp-1-test",
            "SLACK_SIGNING_SECRET": "",
            "BYOI_METRICS_PORT": str(side_port),
            "BYOI_SOCKET_DOWN_SECONDS": "1",
        }
        with running_bot(tmp_path, env=env, fake=fake):
            fake.wait_for(lambda: health(side)[0] == 200)
            slack.outgoing.put(slash_envelope("e1", "scale web 1", "W111", fake.response_url))
            fake.wait_for(lambda: fake.sent("chat.postMessage"))
            slack.outgoing.put(click_envelope("e2", 1, "UBOB", fake.response_url))
            fake.wait_for(lambda: any("succeeded" in text_of(c) for c in fake.sent("chat.update")))

            samples = wait_metrics(
                side,
                lambda s: (
                    slack_calls_match(s, fake, "chat.postMessage")
                    and value(s, "byoi_runs_total", kind="scale_up", outcome="succeeded") == 1
                ),
            )
            assert_run_metrics(samples, servers=1)
            assert slack_calls_match(samples, fake, "apps.connections.open")

            server.shutdown()  # the WebSocket goes away
            _, body = fake.wait_for(lambda: (h := health(side))[0] == 503 and h)
            assert "WebSocket" in str(body["problems"])
