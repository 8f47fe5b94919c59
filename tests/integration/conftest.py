"""Fixtures shared by the integration tests (the database fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import creditbook


@pytest.fixture
def grouped(book: creditbook.Creditbook) -> Iterator[creditbook.Creditbook]:
    """The book with group commit on, turned off again after the test."""
    book.enable_group_commit()
    yield book
    book.disable_group_commit()
