"""``creditbook.settle_gc``: startup objects frozen out of collections, fewer young rounds."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import creditbook


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_gc_freezes_what_exists_and_raises_the_young_threshold() -> None:
    gc.set_threshold(700, 10, 10)
    before = gc.get_freeze_count()
    creditbook.settle_gc()
    assert gc.get_freeze_count() > before
    assert gc.get_threshold() == (20_000, 10, 10)


@pytest.mark.usefixtures("restored_gc")
def test_settle_gc_never_lowers_a_higher_threshold() -> None:
    gc.set_threshold(50_000, 20, 30)
    creditbook.settle_gc(young_threshold=1_000)
    assert gc.get_threshold() == (50_000, 20, 30)
