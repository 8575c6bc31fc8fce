"""The command language: every malformed input gets a specific message and the usage line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.commands import (
    USAGE,
    Approve,
    Cancel,
    Help,
    History,
    Images,
    Refresh,
    Reject,
    Scale,
    Status,
    parse,
    shown,
)
from pipeline.domain.models import Strategy
from pipeline.errors import CommandError

OWN_LIMIT = "; an app's own max_servers in byoi.yml applies too."


def outcome(text: str) -> object:
    """What ``parse`` makes of ``text``: a command, or the CommandError it raised."""
    try:
        return parse(text)
    except CommandError as error:
        return error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scale api 5", Scale("api", 5, relative=False)),
        ("/byoi scale api +2", Scale("api", 2, relative=True)),
        ("scale api -1 --env staging", Scale("api", -1, relative=True, env="staging")),
        (
            "SCALE api 3 --strategy=serial --image family:api --dry-run",
            Scale("api", 3, False, None, "family:api", Strategy.SERIAL, dry_run=True),
        ),
        ("scale api 0", Scale("api", 0, relative=False)),
        ("scale api 2 —env prod", Scale("api", 2, relative=False, env="prod")),
        ("status", Status()),
        ("status api", Status("api")),
        ("images api", Images("api")),
        ("history", History()),
        ("refresh api --from i-0abc --env staging", Refresh("api", "staging", "i-0abc")),
        ("cancel 12", Cancel(12)),
        ("approve #7", Approve(7)),
        ("reject 7", Reject(7)),
        ("help", Help()),
        ("help scale", Help("scale")),
    ],
)
def test_well_formed_commands(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message", "usage"),
    [
        ("", "Say what to do, for example `scale api 3`.", "help"),
        ("   ", "Say what to do, for example `scale api 3`.", "help"),
        (
            "deploy api",
            "Unknown command `deploy` (commands: help, scale, status, images, "
            "refresh, roll, continue, history, cancel, approve, reject, alerts, snooze).",
            "help",
        ),
        (
            "scale api lots",
            "`lots` is not a server count: give a number (5) or a change (+2, -1).",
            "scale",
        ),
        (
            "scale api -0",
            "`-0` changes nothing: give a change like +2 or -1, or a count like 3.",
            "scale",
        ),
        (
            "scale api +0",
            "`+0` changes nothing: give a change like +2 or -1, or a count like 3.",
            "scale",
        ),
        (
            "scale api 5000",
            "5000 servers is more than byoi will plan in one command (1000 at most)" + OWN_LIMIT,
            "scale",
        ),
        (
            "scale api 99999999999999999999",
            "99999999999999999999 servers is more than byoi will plan in one command (1000 at most)"
            + OWN_LIMIT,
            "scale",
        ),
        (
            "scale api",
            "Give an app and a count, for example `scale api 5` or `scale api +2`.",
            "scale",
        ),
        ("scale api 3 4", "Unexpected `4` after `scale api 3`.", "scale"),
        (
            "scale web 3 " + "A" * 300,
            "Unexpected `" + "A" * 39 + "…` after `scale web 3`.",
            "scale",
        ),
        (
            "scale web 3; rm -rf /",
            "`3;` is not a server count: give a number (5) or a change (+2, -1).",
            "scale",
        ),
        ("scale web 3 ; rm -rf /", "Unexpected `;` after `scale web 3`.", "scale"),
        (
            "scale web -100000",
            "`-100000` changes more servers than byoi will plan at once (1000 at most).",
            "scale",
        ),
        (
            "scale web +5000",
            "`+5000` changes more servers than byoi will plan at once (1000 at most)" + OWN_LIMIT,
            "scale",
        ),
        (
            "scale " + "a" * 40 + " 3",
            "`" + "a" * 40 + "` is not an app name: app names are at most 31 characters.",
            "scale",
        ),
        ("refresh api now", "Unexpected `now` after `refresh api`.", "refresh"),
        ("cancel 12 13", "Unexpected `13` after the run number.", "cancel"),
        ("snooze 99999999999999", "`99999999999999` is too big to be an alert number.", "snooze"),
        ("snooze x", "`x` is not an alert number.", "snooze"),
        ("scale API 3", "`API` is not an app name (lowercase letters, digits and '-').", "scale"),
        (
            "scale api 3 --force",
            "Unknown option `--force` (options: --env, --image, --strategy, --dry-run).",
            "scale",
        ),
        ("scale api 3 --env", "`--env` needs a value.", "scale"),
        ("scale api 3 --env a --env b", "`--env` is given twice.", "scale"),
        ("scale api 3 --dry-run=yes", "`--dry-run` takes no value.", "scale"),
        ("scale api 3 --strategy fast", "`fast` is not a strategy (parallel or serial).", "scale"),
        ("scale api 3 --env ../../etc", "`../../etc` is not an environment name.", "scale"),
        (
            "scale api 3 --image 'x;rm'",
            "`'x;rm'` is not an image id, name or family:<name>.",
            "scale",
        ),
        (
            "scale api ３",
            "`３` is not a server count: give a number (5) or a change (+2, -1).",
            "scale",
        ),
        ("cancel", "Give one run number, for example `12`.", "cancel"),
        ("approve abc", "`abc` is not a run number.", "approve"),
        ("approve 0", "`0` is not a run number.", "approve"),
        ("approve ١٢", "`١٢` is not a run number.", "approve"),
        ("status a b", "Unexpected `b` after the app `a`.", "status"),
        ("refresh", "Give one app, for example `refresh api`.", "refresh"),
        ("help nope", "No help for `nope`.", "help"),
        (
            "scale <@U123> 3",
            "`‹＠U123›` is not an app name (lowercase letters, digits and '-').",
            "scale",
        ),
    ],
)
def test_malformed_commands_get_a_specific_message_and_usage(
    text: str, message: str, usage: str
) -> None:
    result = outcome(text)

    assert isinstance(result, CommandError)
    assert result.message == message
    assert result.usage == USAGE[usage]


def test_unicode_junk_is_echoed_safely() -> None:
    result = outcome("\u202escale\u0000 \U0001f680" * 20)

    assert isinstance(result, CommandError)
    assert "\u202e" not in result.message and "\u0000" not in result.message
    assert len(result.message) < 160


def test_shown_neutralises_mentions_and_markup() -> None:
    assert shown("<!channel> `x` @here") == "‹!channel› 'x' ＠here"
    assert shown("a" * 100).endswith("…")


@settings(max_examples=600, deadline=None)
@given(st.text(max_size=200))
def test_parse_raises_nothing_but_a_command_error_on_any_text(text: str) -> None:
    result = outcome(text)

    assert isinstance(result, CommandError) or type(result).__module__ == "pipeline.domain.commands"


WORDS = st.sampled_from(
    [
        "scale",
        "status",
        "approve",
        "cancel",
        "refresh",
        "help",
        "api",
        "3",
        "+2",
        "-1",
        "-0",
        "--env",
        "--env=prod",
        "--image",
        "--strategy",
        "serial",
        "--dry-run",
        "--from",
        "#4",
        "—env",
        "",
        "9" * 30,
        "ü",
        "--",
        "-",
        "+",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(WORDS, max_size=8))
def test_parse_raises_nothing_but_a_command_error_on_command_like_text(words: list[str]) -> None:
    result = outcome(" ".join(words))

    if isinstance(result, CommandError):
        assert result.message and result.usage in USAGE.values()
    if isinstance(result, Scale):
        assert abs(result.count) <= 1000
