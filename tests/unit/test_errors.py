"""The exception tree: stable codes, statuses, and a docstring that draws every class."""

from __future__ import annotations

import re

import pytest

from creditbook.domain import errors
from creditbook.domain.errors import (
    CaptureExceedsHold,
    CreditbookError,
    HoldNotActive,
    IdempotencyConflict,
    InsufficientCredits,
    UnknownFeature,
    UnknownOutcome,
    error_classes,
)

# The public contract: clients match on these codes, so they never change.
STABLE_CODES = {
    "CreditbookError": ("error", 400),
    "InvalidInput": ("validation_error", 422),
    "InvalidQuantity": ("invalid_quantity", 422),
    "UnknownFeature": ("unknown_feature", 422),
    "UnknownOutcome": ("unknown_outcome", 422),
    "UnknownPlan": ("unknown_plan", 422),
    "InvalidCatalog": ("invalid_catalog", 422),
    "InvalidAmount": ("invalid_amount", 422),
    "UnsafeUrl": ("unsafe_url", 422),
    "NotFound": ("not_found", 404),
    "TeamNotFound": ("not_found", 404),
    "MemberNotFound": ("not_found", 404),
    "GrantNotFound": ("not_found", 404),
    "HoldNotFound": ("not_found", 404),
    "Forbidden": ("forbidden", 403),
    "Conflict": ("conflict", 409),
    "IdempotencyConflict": ("idempotency_conflict", 409),
    "HoldNotActive": ("hold_not_active", 409),
    "CaptureExceedsHold": ("capture_exceeds_hold", 409),
    "AlreadyExists": ("already_exists", 409),
    "InsufficientCredits": ("insufficient_credits", 402),
    "CapExceeded": ("member_cap_exceeded", 402),
    "KeyCapExceeded": ("key_cap_exceeded", 402),
    "RateLimited": ("rate_limited", 429),
    "AuditFailed": ("audit_failed", 500),
    "DatabaseUnavailable": ("database_unavailable", 503),
}


def _tree_classes() -> dict[str, type[CreditbookError]]:
    """Classes defined in errors.py (other modules may add subclasses of their own)."""
    return {n: c for n, c in error_classes().items() if c.__module__ == errors.__name__}


def test_error_classes_finds_every_class_of_the_tree() -> None:
    assert set(_tree_classes()) == set(STABLE_CODES)


@pytest.mark.parametrize("name", sorted(STABLE_CODES))
def test_each_error_keeps_its_stable_code_and_status(name: str) -> None:
    cls = error_classes()[name]
    assert (cls.code, cls.status) == STABLE_CODES[name]


def test_every_error_anywhere_has_a_snake_case_code_and_an_http_error_status() -> None:
    for name, cls in error_classes().items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", cls.code), name
        assert 400 <= cls.status <= 599, name
        assert isinstance(cls.exit_code, int) and cls.exit_code >= 1, name
        assert cls.title, name


def test_a_code_is_shared_only_by_classes_that_inherit_it_from_a_common_parent() -> None:
    for name, cls in error_classes().items():
        for other_name, other in error_classes().items():
            if other is cls or other.code != cls.code:
                continue
            common = [
                c
                for c in cls.__mro__
                if issubclass(c, CreditbookError) and c in other.__mro__ and "code" in c.__dict__
            ]
            assert common and common[0].code == cls.code, (
                f"{name} and {other_name} share code {cls.code!r} without inheriting it"
            )


def test_every_status_is_that_of_the_top_level_family() -> None:
    for name, cls in _tree_classes().items():
        family = next(
            (
                c
                for c in cls.__mro__
                if issubclass(c, CreditbookError) and CreditbookError in c.__bases__
            ),
            cls,
        )
        assert cls.status == family.status, name


@pytest.mark.parametrize("name", sorted(STABLE_CODES))
def test_the_module_docstring_draws_every_class_with_its_code_and_status(name: str) -> None:
    cls = error_classes()[name]
    doc = errors.__doc__ or ""
    if cls is CreditbookError:  # the root line is the table's header
        assert re.search(r"^\s*CreditbookError\s+code\s+status\s*$", doc, re.MULTILINE)
        return
    pattern = rf"(^|[─\s]){re.escape(name)}\s+{re.escape(cls.code)}\s+{cls.status}\b"
    assert re.search(pattern, doc, re.MULTILINE), f"{name} is missing from the docstring tree"


def test_the_docstring_tree_names_no_class_that_does_not_exist() -> None:
    doc = errors.__doc__ or ""
    drawn = re.findall(
        r"^\s*(?:[│├└─\s]*)([A-Z][A-Za-z]+)\s+[a-z_]+\s+(?:\d{3}|status)\s*$", doc, re.MULTILINE
    )
    assert drawn, "no tree found in the docstring"
    assert set(drawn) == set(STABLE_CODES)


def test_the_docstring_tree_nests_each_class_under_its_parent() -> None:
    doc = errors.__doc__ or ""
    depth: dict[str, int] = {}
    for line in doc.splitlines():
        m = re.match(r"^\s*([│├└─ ]*)([A-Z][A-Za-z]+)\s+[a-z_]+\s+(?:\d{3}|status)\s*$", line)
        if m:
            depth[m.group(2)] = len(m.group(1))
    for name in STABLE_CODES:
        cls = error_classes()[name]
        if cls is CreditbookError:
            continue
        parent = cls.__bases__[0].__name__
        assert depth[name] > depth[parent], f"{name} is not drawn under {parent}"


def test_errors_carry_their_details_as_plain_data() -> None:
    err = InsufficientCredits(needed=25, available=7, feature="phone_finder")
    assert err.to_dict() == {
        "code": "insufficient_credits",
        "message": "insufficient credits for phone_finder: 25 needed, 7 available",
        "needed": 25,
        "available": 7,
        "feature": "phone_finder",
    }


def test_messages_say_what_is_valid() -> None:
    assert "valid features: a, b" in UnknownFeature("zz", ["b", "a"]).message
    assert (
        "valid outcomes: found, not_found"
        in UnknownOutcome("phone_finder", "maybe", ["found", "not_found"]).message
    )
    assert "never charge more than was held" in CaptureExceedsHold("h", 5, 9).message
    assert "only an active hold" in HoldNotActive("h", "released").message
    assert "use a new key" in IdempotencyConflict("k").message
