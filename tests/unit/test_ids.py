"""Ids are unique, prefixed, fixed-length and sort in creation order."""

from __future__ import annotations

import re

from creditbook.domain.ids import new_id


def test_ids_are_prefixed_and_26_characters_of_lower_case_base32() -> None:
    assert re.fullmatch(r"ent_[0-9a-hjkmnp-tv-z]{26}", new_id("ent"))


def test_ids_made_one_after_another_are_unique_and_sorted() -> None:
    ids = [new_id("ent") for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
