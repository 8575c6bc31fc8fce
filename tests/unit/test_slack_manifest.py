"""The shipped Slack app manifest asks for what the bot uses, and no more."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFEST = Path(__file__).parents[2] / "docs" / "slack-app-manifest.yml"


def test_the_manifest_declares_the_command_events_interactivity_and_scopes() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())

    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/byoi"]
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == [
        "channels:history",  # conversations.replies: a reply found again after a crash
        "chat:write",
        "chat:write.public",
        "commands",
        "groups:history",
        "usergroups:read",
    ]
    urls = {
        manifest["settings"]["interactivity"]["request_url"],
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["features"]["slash_commands"][0]["url"],
    }
    assert len(urls) == 1 and urls.pop().endswith("/slack/events")
