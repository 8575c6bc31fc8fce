"""Staleness as a table: age edges, drift per key, unknown versions, deprecation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.domain.staleness import FindingKind, assess
from providers.base import Image, ImageState
from tests.conftest import START

DECLARED = {"ruby_version": "3.2.2", "operating_system": "ubuntu2204"}


def image(days: float = 1, versions: dict[str, str] | None = None, **kw: object) -> Image:
    return Image(
        id="img-1",
        name="web",
        created_at=START - timedelta(days=days),
        versions=DECLARED if versions is None else versions,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("days", "kinds"),
    [(0, []), (30, []), (30.9, []), (31, [FindingKind.AGE]), (400, [FindingKind.AGE])],
)
def test_age_is_judged_in_whole_days_against_the_limit(days: float, kinds: list[str]) -> None:
    result = assess(image(days), DECLARED, max_age_days=30, now=START)

    assert [f.kind for f in result.findings] == kinds


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        (
            {"ruby_version": "2.7.0", "operating_system": "ubuntu2204"},
            [(FindingKind.DRIFT, "ruby_version 2.7.0 → 3.2.2")],
        ),
        ({"ruby_version": "3-2-2", "operating_system": "ubuntu2204"}, []),  # GCP label form
        (
            {"ruby_version": "3.2.2"},
            [(FindingKind.UNKNOWN, "operating_system unknown (declared ubuntu2204)")],
        ),
        (
            {},
            [
                (
                    FindingKind.UNKNOWN,
                    "versions unknown: the image records none (operating_system, ruby_version)",
                )
            ],
        ),
        (
            {"ruby_version": "3.2.2", "operating_system": "ubuntu2004", "extra": "1"},
            [(FindingKind.DRIFT, "operating_system ubuntu2004 → ubuntu2204")],
        ),
    ],
)
def test_drift_compares_each_declared_version(
    recorded: dict[str, str], expected: list[tuple[str, str]]
) -> None:
    result = assess(image(versions=recorded), DECLARED, max_age_days=30, now=START)

    assert [(f.kind, f.detail) for f in result.findings] == expected


def test_nothing_declared_means_no_drift() -> None:
    assert assess(image(versions={}), {}, max_age_days=30, now=START).fresh


@pytest.mark.parametrize(
    ("state", "deprecated_at", "kind", "blocking"),
    [
        (ImageState.DEPRECATED, None, FindingKind.DEPRECATED, False),
        (ImageState.OBSOLETE, None, FindingKind.OBSOLETE, True),
        (ImageState.DELETED, None, FindingKind.OBSOLETE, True),
        (ImageState.READY, START - timedelta(hours=1), FindingKind.DEPRECATED, False),
        (ImageState.READY, START + timedelta(days=3), None, False),
    ],
)
def test_deprecation_from_state_or_time(
    state: ImageState, deprecated_at: object, kind: str | None, blocking: bool
) -> None:
    result = assess(
        image(state=state, deprecated_at=deprecated_at), DECLARED, max_age_days=30, now=START
    )

    assert [f.kind for f in result.findings] == ([kind] if kind else [])
    assert (result.blocking is not None) is blocking
