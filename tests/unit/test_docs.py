"""The documentation names every configuration key byoi accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.configkeys import APP_KEYS, POLICY_KEYS, PROVIDER_KEYS, TOP_KEYS

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


@pytest.mark.parametrize("key", sorted({*POLICY_KEYS, *APP_KEYS, *TOP_KEYS}))
def test_every_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in DOC.read_text()


@pytest.mark.parametrize("key", ["stale.max_age_days", "stale.schedule", "stale.interval_seconds"])
def test_every_stale_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in DOC.read_text()


@pytest.mark.parametrize(
    "key", sorted(f"providers.{p}.{k}" for p, keys in PROVIDER_KEYS.items() for k in keys)
)
def test_every_provider_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in DOC.read_text()
