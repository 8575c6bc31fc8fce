"""A script's report kept with its server: scrub's removals, or the last line with text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.execution.serversteps import NOTE_CHARS, _summary

LINES = st.lists(
    st.one_of(
        st.text(alphabet=" \t\r\n\x0b\x0c\x1c\u2028abc", max_size=12),
        st.sampled_from(["removed /tmp/x", "  emptied /var/log", "ok", "removed", ""]),
    ),
    max_size=8,
)


def _by_lines(output: str) -> str:
    """What the report is, said line by line (the slow way, over every line)."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    cleaned = [line.split(" ", 1)[1] for line in lines if line.startswith(("removed ", "emptied "))]
    if cleaned:
        removed = f"scrubbed {len(cleaned)}: " + ", ".join(cleaned)
        return removed if len(removed) <= NOTE_CHARS else removed[:NOTE_CHARS] + "…"
    last = lines[-1] if lines else ""
    return last if len(last) <= NOTE_CHARS else "…" + last[-NOTE_CHARS:]


@given(LINES, st.sampled_from(["\n", "\r\n", "\r", "\u2028"]))
def test_the_report_is_the_last_line_with_text_or_scrubs_removals(
    lines: list[str], end: str
) -> None:
    output = end.join(lines)
    assert _summary(output) == _by_lines(output)


def test_reports_of_a_deploy_and_a_scrub() -> None:
    assert _summary("building\n  deployed web 1.4.2  \n\n") == "deployed web 1.4.2"
    assert _summary("removed /etc/ssh/ssh_host_rsa_key\nemptied /var/log/syslog\n") == (
        "scrubbed 2: /etc/ssh/ssh_host_rsa_key, /var/log/syslog"
    )
    assert _summary("x" * 600) == "…" + "x" * NOTE_CHARS
    assert _summary(" \n\t\n") == ""
