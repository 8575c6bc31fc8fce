"""What a new user meets before Slack works: the shell says why it is not serving."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_shell import shell

NO_SLACK = {"SLACK_SIGNING_SECRET": "", "SLACK_APP_TOKEN": "", "SLACK_BOT_TOKEN": ""}


def test_a_bot_token_alone_starts_the_shell_and_says_what_serve_needs(tmp_path: Path) -> None:
    done = shell(tmp_path, "quit\n", env={**NO_SLACK, "SLACK_BOT_TOKEN": "xoxb-1-2-abc"})

    assert done.returncode == 0, done.stderr
    assert "SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET (HTTP) nor" in done.stderr
    assert "`byoi serve` needs one of them" in done.stderr
    assert "byoi demo" in done.stdout


def test_without_any_slack_token_the_shell_starts_quietly(tmp_path: Path) -> None:
    done = shell(tmp_path, "quit\n", env=NO_SLACK)

    assert done.returncode == 0 and "SLACK_BOT_TOKEN" not in done.stderr
