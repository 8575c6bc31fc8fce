"""The schedule: persisted in the database, and only one scheduler per database."""

from __future__ import annotations

from pathlib import Path

from bot.slack.schedule import Schedule
from pipeline.config.loader import load_config
from tests.conftest import config_text, make_world


def test_only_one_scheduler_runs_against_a_database(tmp_path: Path) -> None:
    world = make_world(tmp_path, "stale:\n  interval_seconds: 3600\n" + config_text())
    world.store.close()
    config = load_config(tmp_path / "byoi.yml")
    first = Schedule(config, lambda trigger: None)
    second = Schedule(config, lambda trigger: None)

    try:
        assert first.start() is True
        assert second.start() is False
        assert first.next_run() is not None
    finally:
        first.stop()
        second.stop()
    third = Schedule(config, lambda trigger: None)
    assert third.start() is True  # the lock went with the first one
    third.stop()


def test_the_due_time_survives_a_restart(tmp_path: Path) -> None:
    world = make_world(tmp_path, "stale:\n  interval_seconds: 3600\n" + config_text())
    world.store.close()
    config = load_config(tmp_path / "byoi.yml")
    first = Schedule(config, lambda trigger: None)
    first.start()
    due = first.next_run()
    first.stop()

    again = Schedule(config, lambda trigger: None)
    again.start()
    try:
        assert again.next_run() == due
    finally:
        again.stop()
