"""Ids are unique, prefixed, fixed-length and sort in creation order."""

from __future__ import annotations

import re

import pytest

from creditbook.domain import ids
from creditbook.domain.ids import new_id


def test_ids_are_prefixed_and_26_characters_of_lower_case_base32() -> None:
    assert re.fullmatch(r"ent_[0-9a-hjkmnp-tv-z]{26}", new_id("ent"))


def test_ids_made_one_after_another_are_unique_and_sorted() -> None:
    ids = [new_id("ent") for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_ids_sort_across_a_carry_out_of_the_cached_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # new_id re-encodes only the last 4 characters while the count stays under
    # the cached 60 bits; start two below a carry, within one frozen millisecond.
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_750_000_000_000_000_000)
    first = new_id("ent")
    monkeypatch.setattr(ids, "_last_rand", ((ids._last_rand >> 20) << 20) | 0xFFFFE)
    made = [first] + [new_id("ent") for _ in range(5)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert {m[4:14] for m in made} == {first[4:14]}  # same millisecond
    assert made[1][4:26] != made[2][4:26]  # the carry reached the cached characters
    counts = [_decode(m[14:]) for m in made[1:]]
    assert counts == list(range(counts[0], counts[0] + 5))


def _decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + ids._ALPHABET.index(char)
    return value
