"""The rooms keep their doors: what each package may import, and where SQL may live."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SDKS = ("slack_bolt", "slack_sdk", "boto3", "botocore", "google", "pydo", "paramiko")
SQL = re.compile(
    r"\b(SELECT .+ FROM|INSERT (OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE)\b"
)


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or lazily inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


@pytest.mark.parametrize("path", modules("pipeline"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_pipeline_imports_no_chat_or_cloud_sdk_and_nothing_from_bot(path: Path) -> None:
    wrong = {n for n in imported(path) if under(n, (*SDKS, "bot"))}

    assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


@pytest.mark.parametrize("path", modules("providers"), ids=lambda p: str(p.relative_to(ROOT)))
def test_providers_import_nothing_from_the_pipeline_or_bot(path: Path) -> None:
    wrong = {n for n in imported(path) if under(n, ("pipeline", "bot"))}

    assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


# The local provider's index of its own servers (a stand-in for a cloud's API), not byoi's state:
# providers import nothing of the pipeline, so it cannot live in pipeline/state.
PROVIDER_OWN_SQL = {ROOT / "providers" / "local_index.py"}


def test_only_the_state_package_holds_sql() -> None:
    outside = [
        str(p.relative_to(ROOT))
        for p in modules("pipeline") + modules("bot") + modules("providers")
        if SQL.search(p.read_text())
        and ROOT / "pipeline" / "state" not in p.parents
        and p not in PROVIDER_OWN_SQL
    ]

    assert outside == []


def test_the_pipeline_and_providers_never_speak_of_slack() -> None:
    speaking = [
        str(p.relative_to(ROOT))
        for p in modules("pipeline") + modules("providers")
        if "slack" in p.read_text().lower()
    ]

    assert speaking == []


def test_the_checks_would_see_a_lazy_import_and_sql(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def later():\n    from slack_sdk import WebClient\n    import bot.cli\n")

    assert {n for n in imported(sample) if under(n, (*SDKS, "bot"))} == {"slack_sdk", "bot.cli"}
    assert SQL.search('conn.execute("UPDATE runs SET state = ? WHERE id = ?")')
    assert not under("botany", ("bot",))
