"""The README's quick tour runs as written and its comments tell the truth."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


def _tour_code() -> str:
    text = README.read_text()
    match = re.search(r"```python\n(import creditbook\n.*?)```", text, re.S)
    assert match, "the README's quick tour is missing"
    return match.group(1)


def test_the_quick_tour_runs_and_its_numbers_are_right(tmp_path: Path) -> None:
    code = _tour_code().replace(
        "creditbook.open()", f"creditbook.open('sqlite:///{tmp_path / 'tour.db'}')"
    )
    results: dict[str, Any] = {}
    # Keep each commented line's value so the comments can be checked.
    lines = []
    for n, line in enumerate(code.splitlines()):
        m = re.match(r"^(book\.\S.*?)\s+#", line)
        lines.append(f"_r[{n}] = {m.group(1)}" if m else line)
    namespace: dict[str, Any] = {"_r": results}
    exec("\n".join(lines), namespace)
    values = list(results.values())
    # undeliverable 0, risky 5, a 61-second US call 8
    assert values[1:4] == [0, 5, 8]
    capture = values[4]
    assert (capture.credits, capture.returned) == (20, 40)
    assert values[5] == values[6]  # a retry with the same key: one effect
    balance = values[7]
    assert balance.buckets["calling"] == 1200 - 8
    assert balance.buckets["purchased"] == 1000
    assert values[8] is True
