"""The spending order, as a table: which grants pay for a charge, and how much each.

Rule (SPEC "Spending order"): only grants that are effective (inclusive), not
expired (exclusive) and whose scope covers the feature are eligible; they are
used narrower scope first, then free before purchased, then soonest expiry
first (no expiry last), then oldest first. One charge may span several grants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from creditbook.catalog import load_catalog
from creditbook.domain.book import ChargeResult, TeamBook, check_invariants
from creditbook.domain.errors import InsufficientCredits
from creditbook.domain.grants import Category, Source
from creditbook.domain.ledger import GrantBalance, balances_from_postings
from creditbook.domain.pricing import Call

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
CATALOG = load_catalog()


@dataclass(frozen=True)
class G:
    """One grant of a table row; times are hours from NOW, issued in row order."""

    label: str
    credits: int
    scope: tuple[str, ...] | None = None
    category: str = "free"
    effective: float = -24
    expires: float | None = 24 * 30


def _book(grants: list[G]) -> tuple[TeamBook, dict[str, str]]:
    book = TeamBook.load("team_1", CATALOG, NOW, [])
    labels: dict[str, str] = {}
    for g in grants:
        grant = book.issue(
            credits=g.credits,
            source=Source.GIFT if g.category == "free" else Source.PURCHASE,
            category=Category(g.category),
            bucket="gifted" if g.category == "free" else "purchased",
            scope=frozenset(g.scope) if g.scope else None,
            effective_at=NOW + timedelta(hours=g.effective),
            expires_at=None if g.expires is None else NOW + timedelta(hours=g.expires),
        )
        labels[grant.id] = g.label
    return book, labels


def _charge(book: TeamBook, feature: str, credits: int) -> ChargeResult:
    """Charge exactly ``credits`` for ``feature`` (calls to a basic destination: 4 a minute)."""
    if feature == "calling":
        assert credits % 4 == 0
        return book.charge("calling", call=Call(credits // 4 * 60, True, "basic"))
    unit = CATALOG.feature(feature).cost
    assert credits % unit == 0
    return book.charge(feature, quantity=credits // unit)


def _assert_consistent(book: TeamBook) -> None:
    assert check_invariants(book.grants.values(), book.holds.values()) == []
    assert all(e.is_balanced() for e in book.entries)
    recomputed = balances_from_postings(p for e in book.entries for p in e.postings)
    assert recomputed == {
        g.id: GrantBalance(g.amount, g.remaining, g.reserved) for g in book.grants.values()
    }


ROWS = [
    pytest.param([G("a", 10)], "ai_variable", 3, {"a": 3}, id="one grant pays"),
    pytest.param(
        [G("free", 2), G("bought", 5, category="purchased", expires=None)],
        "ai_variable",
        6,
        {"free": 2, "bought": 4},
        id="a charge spans two grants",
    ),
    pytest.param(
        [G("soon", 3, expires=1), G("later", 4, expires=48), G("bought", 9, category="purchased")],
        "email_finder",
        10,
        {"soon": 3, "later": 4, "bought": 3},
        id="a charge spans three grants in order",
    ),
    pytest.param(
        [G("general", 100), G("allowance", 8, scope=("calling",))],
        "calling",
        12,
        {"allowance": 8, "general": 4},
        id="a call takes the calling allowance first",
    ),
    pytest.param(
        [G("general", 100), G("allowance", 8, scope=("calling",))],
        "ai_variable",
        5,
        {"general": 5},
        id="the calling allowance never pays for other features",
    ),
    pytest.param(
        [
            G("free", 100),
            G("bought_calls", 8, scope=("calling",), category="purchased", expires=None),
        ],
        "calling",
        4,
        {"bought_calls": 4},
        id="narrower scope comes before free",
    ),
    pytest.param(
        [G("two", 8, scope=("calling", "ai_variable")), G("one", 8, scope=("calling",))],
        "calling",
        12,
        {"one": 8, "two": 4},
        id="a one-feature scope comes before a two-feature scope",
    ),
    pytest.param(
        [
            G("bought", 50, category="purchased", expires=None, effective=-500),
            G("free", 50, expires=1),
        ],
        "ai_variable",
        60,
        {"free": 50, "bought": 10},
        id="free before purchased",
    ),
    pytest.param(
        [G("bought", 50, category="purchased", expires=1), G("free", 50, expires=48)],
        "ai_variable",
        5,
        {"free": 5},
        id="free before purchased even when the purchase expires sooner",
    ),
    pytest.param(
        [G("late", 10, expires=48), G("soon", 10, expires=2)],
        "ai_variable",
        12,
        {"soon": 10, "late": 2},
        id="soonest expiry first",
    ),
    pytest.param(
        [G("forever", 10, expires=None), G("month", 10, expires=720)],
        "ai_variable",
        11,
        {"month": 10, "forever": 1},
        id="no expiry last",
    ),
    pytest.param(
        [
            G("new", 10, category="purchased", expires=None, effective=-1),
            G("old", 10, category="purchased", expires=None, effective=-48),
        ],
        "ai_variable",
        12,
        {"old": 10, "new": 2},
        id="oldest first",
    ),
    pytest.param(
        [
            G("first", 10, category="purchased", expires=None, effective=-5),
            G("second", 10, category="purchased", expires=None, effective=-5),
        ],
        "ai_variable",
        12,
        {"first": 10, "second": 2},
        id="same start: first issued first",
    ),
    pytest.param(
        [G("future", 100, effective=1), G("bought", 10, category="purchased", expires=None)],
        "ai_variable",
        3,
        {"bought": 3},
        id="a grant not yet effective is skipped",
    ),
    pytest.param(
        [G("expired", 100, effective=-48, expires=-1), G("bought", 10, category="purchased")],
        "ai_variable",
        3,
        {"bought": 3},
        id="an expired grant is skipped",
    ),
    pytest.param(
        [
            G("empty_past", 100, effective=-1, expires=-1),
            G("empty_now", 100, effective=0, expires=0),
            G("bought", 10, category="purchased"),
        ],
        "ai_variable",
        3,
        {"bought": 3},
        id="a grant whose expiry equals its start is never usable",
    ),
    pytest.param(
        [G("ends_now", 100, effective=-48, expires=0), G("bought", 10, category="purchased")],
        "ai_variable",
        3,
        {"bought": 3},
        id="expiry is exclusive",
    ),
    pytest.param(
        [G("starts_now", 10, effective=0, expires=1), G("bought", 10, category="purchased")],
        "ai_variable",
        3,
        {"starts_now": 3},
        id="effective time is inclusive",
    ),
    pytest.param(
        [G("phones", 100, scope=("phone_finder",)), G("bought", 10, category="purchased")],
        "email_finder",
        5,
        {"bought": 5},
        id="a grant scoped to another feature is skipped",
    ),
    pytest.param(
        [G("phones", 100, scope=("phone_finder",)), G("free", 100)],
        "phone_finder",
        120,
        {"phones": 100, "free": 20},
        id="a scoped grant then a general one for its feature",
    ),
]


@pytest.mark.parametrize(("grants", "feature", "credits", "expected"), ROWS)
def test_spending_order(
    grants: list[G], feature: str, credits: int, expected: dict[str, int]
) -> None:
    book, labels = _book(grants)
    before = {labels[g.id]: g.remaining for g in book.grants.values()}
    result = _charge(book, feature, credits)
    split = {labels[gid]: c for gid, c in result.grants.items()}
    assert split == expected
    assert list(split) == list(expected), "grants were drawn in another order"
    assert result.credits == credits == sum(expected.values())
    after = {labels[g.id]: g.remaining for g in book.grants.values()}
    assert {k: before[k] - after[k] for k in before if before[k] != after[k]} == expected
    _assert_consistent(book)


@pytest.mark.parametrize(
    ("grants", "feature", "credits", "available"),
    [
        pytest.param([G("a", 3)], "email_finder", 5, 3, id="one grant short"),
        pytest.param(
            [
                G("expired", 100, effective=-48, expires=-1),
                G("future", 100, effective=1),
                G("phones", 100, scope=("phone_finder",)),
                G("a", 2),
                G("b", 2, category="purchased", expires=None),
            ],
            "email_finder",
            5,
            4,
            id="only eligible grants count as available",
        ),
        pytest.param([G("calls", 400, scope=("calling",))], "ai_variable", 1, 0, id="nothing"),
    ],
)
def test_a_charge_the_eligible_grants_cannot_cover_is_refused_whole(
    grants: list[G], feature: str, credits: int, available: int
) -> None:
    book, _ = _book(grants)
    remaining = {g.id: g.remaining for g in book.grants.values()}
    entries = len(book.entries)
    with pytest.raises(InsufficientCredits) as info:
        _charge(book, feature, credits)
    assert (info.value.details["needed"], info.value.details["available"]) == (credits, available)
    assert {g.id: g.remaining for g in book.grants.values()} == remaining
    assert len(book.entries) == entries
    _assert_consistent(book)
