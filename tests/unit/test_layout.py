"""The rooms keep their doors: what each package may import, and where SQL may live."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

from pipeline.errors import ByoiError

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


PRODUCTION = ("bot", "pipeline", "providers")


def asserts(path: Path) -> list[int]:
    """Lines of ``assert`` statements: they vanish under `python -O`, so they may neither
    narrow a type nor guard anything in production code."""
    return [n.lineno for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Assert)]


def test_production_code_has_no_assert() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{line}"
        for package in PRODUCTION
        for p in modules(package)
        for line in asserts(p)
    ]

    assert found == []


def exception_classes(module: ModuleType) -> list[type[BaseException]]:
    """The exception classes ``module`` itself defines."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    ]


def outside_the_root(module: ModuleType) -> list[str]:
    """Exceptions of ``module`` that do not derive from their package's root: ByoiError in bot
    and pipeline; in providers, which import nothing of the pipeline, the port's ProviderError
    (the services translate it), except private signals an adapter keeps to itself."""
    from providers.base import ProviderError

    in_providers = module.__name__.split(".")[0] == "providers"
    root = ProviderError if in_providers else ByoiError
    return [
        f"{module.__name__}.{cls.__name__}"
        for cls in exception_classes(module)
        if not issubclass(cls, root) and not (in_providers and cls.__name__.startswith("_"))
    ]


def production_modules() -> list[str]:
    names = []
    for package in PRODUCTION:
        for path in modules(package):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] != "__main__":
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("name", production_modules())
def test_every_exception_derives_from_its_root(name: str) -> None:
    assert outside_the_root(importlib.import_module(name)) == []


def test_the_checks_would_see_an_assert_and_a_stray_exception(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f(x: int | None) -> int:\n    assert x is not None\n    return x\n")
    module = ModuleType("pipeline.sample")
    module.ByoiError = ByoiError  # type: ignore[attr-defined]
    exec("class Oops(Exception): pass\nclass Fine(ByoiError): pass", vars(module))
    # An adapter's errors derive from the port's root; a private signal may stay its own.
    adapter = ModuleType("providers.sample")
    exec("class Odd(ValueError): pass\nclass _Signal(Exception): pass", vars(adapter))

    assert asserts(sample) == [2]
    assert outside_the_root(module) == ["pipeline.sample.Oops"]
    assert outside_the_root(adapter) == ["providers.sample.Odd"]


@pytest.mark.parametrize("path", modules("pipeline/domain"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_domain_imports_no_use_case_execution_or_state(path: Path) -> None:
    rooms = ("pipeline.services", "pipeline.execution", "pipeline.state")
    wrong = {n for n in imported(path) if under(n, rooms)}

    assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_the_error_root_imports_nothing_of_byoi() -> None:
    wrong = {n for n in imported(ROOT / "pipeline" / "errors.py") if under(n, PRODUCTION)}

    assert wrong == set()
