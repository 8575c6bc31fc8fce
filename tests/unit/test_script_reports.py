"""A script's report kept with its server: scrub's removals, or the last line with text,
written out where it holds control characters; a failure's reason is as long at most."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.models import ServerStatus
from pipeline.execution.serversteps import NOTE_CHARS, _summary, printable
from tests.conftest import config_text, make_world

LINES = st.lists(
    st.one_of(
        st.text(alphabet=" \t\r\n\x0b\x0c\x1c\u2028abc\x1b\x07", max_size=12),
        st.sampled_from(["removed /tmp/x", "  emptied /var/log", "ok", "removed", ""]),
    ),
    max_size=8,
)


def _by_lines(output: str) -> str:
    """What scrub's report is, said line by line (the slow way, over every line)."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    cleaned = [line.split(" ", 1)[1] for line in lines if line.startswith(("removed ", "emptied "))]
    if cleaned:
        removed = printable(f"scrubbed {len(cleaned)}: " + ", ".join(cleaned))
        return removed if len(removed) <= NOTE_CHARS else removed[:NOTE_CHARS] + "…"
    last = printable(lines[-1] if lines else "")
    return last if len(last) <= NOTE_CHARS else "…" + last[-NOTE_CHARS:]


@given(LINES, st.sampled_from(["\n", "\r\n", "\r", "\u2028"]))
def test_the_report_is_the_last_line_with_text_or_scrubs_removals(
    lines: list[str], end: str
) -> None:
    output = end.join(lines)
    assert _summary("scrub", output) == _by_lines(output)


def test_reports_of_a_deploy_and_a_scrub() -> None:
    assert _summary("deploy", "building\n  deployed web 1.4.2  \n\n") == "deployed web 1.4.2"
    assert _summary("scrub", "removed /etc/ssh/ssh_host_rsa_key\nemptied /var/log/syslog\n") == (
        "scrubbed 2: /etc/ssh/ssh_host_rsa_key, /var/log/syslog"
    )
    assert _summary("deploy", "x" * 600) == "…" + "x" * NOTE_CHARS
    assert _summary("deploy", " \n\t\n") == ""


def test_only_scrubs_removals_are_read_as_such() -> None:
    output = "removed old cache\nemptied the tmp dir\ndeploy finished ok\n"
    assert _summary("deploy", output) == "deploy finished ok"
    assert _summary("health", "removed 3 stale files\n") == "removed 3 stale files"


def test_control_characters_are_written_out_not_obeyed() -> None:
    assert _summary("deploy", "\x1b[2J\x1b[Hcleared screen\x07\n") == (
        "\\x1b[2J\\x1b[Hcleared screen\\x07"
    )
    assert _summary("deploy", "tab\there\x00nul\x9bcsi") == "tab\there\\x00nul\\x9bcsi"


def test_a_failed_scripts_reason_is_kept_short_and_printable(tmp_path: Path) -> None:
    long_line = "y" * 700
    world = make_world(
        tmp_path,
        config_text(deploy_command=f"'printf \"boom {long_line}\\033[2J done\\n\"; exit 3'"),
    )
    run = world.request("scale web 1")
    world.say(f"approve {run.id}", "UBOB")
    (server,) = world.finish(run.id).servers

    assert server.status == ServerStatus.FAILED and server.reason is not None
    assert server.reason.startswith("deploy exited 3: …")
    assert server.reason.endswith("y" * 20 + "\\x1b[2J done")
    assert len(server.reason) < NOTE_CHARS + 100
