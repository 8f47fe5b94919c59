"""Fixtures shared by the integration tests (the database fixtures are in tests/conftest.py)."""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import creditbook


@pytest.fixture
def grouped(book: creditbook.Creditbook) -> Iterator[creditbook.Creditbook]:
    """The book with group commit on, turned off again after the test."""
    book.enable_group_commit()
    yield book
    book.disable_group_commit()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of this test's own (no tables), once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@pytest.fixture
def db_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """``creditbook ARGS`` in this process: (exit code, stdout, stderr); ``answer`` is typed
    at a confirmation prompt. The database is ``CREDITBOOK_DATABASE_URL``'s."""
    from creditbook.entrypoints.cli.app import main

    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str, answer: str | None = None) -> tuple[int, str, str]:
        if answer is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(answer + "\n"))
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _root_conftest():  # type: ignore[no-untyped-def]
    # tests/conftest.py's PostgreSQL helpers: not importable by name beside this conftest.
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("creditbook_tests_root_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def another_empty_url(empty_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database of the same kind as ``empty_url``'s."""
    if empty_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'another.db'}"
        return
    root = _root_conftest()
    url: str = root.create_pg_database("cb_copy")
    yield url
    root.drop_pg_database(url)
