"""Planning a roll's batches: sizes, percentages and the canary."""

from __future__ import annotations

import pytest

from pipeline.domain import roll


@pytest.mark.parametrize(
    ("text", "count", "size"),
    [(None, 4, 1), ("2", 4, 2), ("50%", 4, 2), ("25%", 5, 2), ("1%", 3, 1), ("100%", 7, 7)],
)
def test_a_batch_is_a_count_or_a_share_rounded_up(text: str | None, count: int, size: int) -> None:
    assert roll.batch_size(text, count) == size


@pytest.mark.parametrize("text", ["0", "-1", "150%", "two", "2.5", ""])
def test_a_malformed_batch_is_refused(text: str) -> None:
    assert roll.batch_size(text, 4) is None


def test_batches_cover_every_server_once_in_order() -> None:
    assert roll.batches(4, 2, canary=False) == [[1, 2], [3, 4]]
    assert roll.batches(5, 2, canary=False) == [[1, 2], [3, 4], [5]]
    assert roll.batches(3, 10, canary=False) == [[1, 2, 3]]


def test_a_canary_goes_alone_first() -> None:
    assert roll.batches(5, 2, canary=True) == [[1], [2, 3], [4, 5]]
    assert roll.batches(1, 3, canary=True) == [[1]]


def test_slots_pair_each_new_server_with_the_old_one_it_replaces() -> None:
    assert [(roll.new_slot(p), roll.old_slot(p)) for p in (1, 2)] == [(1, 2), (3, 4)]
    assert roll.is_new(3) and not roll.is_new(4)
