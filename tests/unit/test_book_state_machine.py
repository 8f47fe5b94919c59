"""TeamBook against an independent reference model, driven by a Hypothesis state machine.

Random grants, charges, holds, captures, releases, revocations and a moving
clock are applied to a ``TeamBook`` and to ``reference_model.RefBook`` side
by side. After every step the two must agree on every answer (credits per
grant, or the error code) and on every grant, and the book must pass the
audit: balanced entries, grants equal to what their postings say, nothing
negative, reserved <= remaining, each hold resolved at most once and never
captured above its amount.

Idempotency: the book only records a charge's key on its entry; replaying the
first answer is the service layer's job (its store of keys). The machine
models that layer: a retried key is answered from the first result without
calling the book, and the reference model decides replay / conflict /
first use. The service tests must prove the real store does the same.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from creditbook.catalog import load_catalog
from creditbook.domain.book import ChargeResult, TeamBook, check_invariants
from creditbook.domain.errors import CreditbookError
from creditbook.domain.grants import Category, Source
from creditbook.domain.holds import Hold
from creditbook.domain.ledger import (
    Account,
    EntryKind,
    GrantBalance,
    Posting,
    balances_from_postings,
)
from creditbook.domain.pricing import Call

sys.path.insert(0, str(Path(__file__).parent))
from reference_model import FEATURES, Outcome, RefBook, RefError

START = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
CATALOG = load_catalog()
FEATURE_KEYS = sorted(FEATURES)
DESTINATIONS = [None, "US", "es", "AU", "SG", "ZZ", "global"]
KEYS = ["key-a", "key-b", "key-c"]


def mostly(valid: list[Any], invalid: list[Any], weight: int = 12) -> st.SearchStrategy[Any]:
    """Valid values ``weight`` times as often as each invalid one."""
    return st.sampled_from(valid * weight + invalid)


quantities = mostly([1, 1, 1, 2, 2, 3, 4, 7, 12], [0, -1, 100_001], weight=3)
features = mostly(FEATURE_KEYS, ["fax"], weight=6)
calls = st.tuples(
    mostly([0, 1, 59, 60, 61, 119, 180, 299, 400], [-1, 86_401], weight=3),
    st.booleans(),
    st.sampled_from(DESTINATIONS),
)


def outcomes(feature: str) -> st.SearchStrategy[str | None]:
    known = list(FEATURES[feature][2]) if feature in FEATURES else []
    return mostly([None, None, *known], ["maybe"], weight=4)


def _code(exc: BaseException) -> str:
    assert isinstance(exc, CreditbookError), f"{type(exc).__name__} is not a CreditbookError: {exc}"
    return exc.code


class BookVersusModel(RuleBasedStateMachine):
    """Drives both books; every clock step then runs ``expire_holds`` and ``expire_grants``."""

    SWEEP_HOLDS = True

    grants = Bundle("grants")
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.book = TeamBook.load("team_sm", CATALOG, START, [])
        self.model = RefBook(START)
        self.to_book: dict[str, str] = {}  # model grant id -> book grant id
        self.to_model: dict[str, str] = {}
        self.book_holds: dict[str, Hold] = {}  # model hold id -> book hold
        self.first_answers: dict[str, Outcome] = {}  # the service layer's key store
        self.hold_seq = 0

    # ---- helpers ----

    def _same_outcome(self, result: ChargeResult, expected: Outcome) -> None:
        split = {self.to_model[g]: c for g, c in result.grants.items()}
        assert (result.credits, split) == (expected["credits"], expected["split"])
        if result.entry.kind is not EntryKind.CAPTURE:
            kind = EntryKind.CHARGE if expected["billable"] else EntryKind.ATTEMPT
            assert result.entry.kind is kind
            assert (result.entry.postings == ()) is (not expected["billable"])

    def _both(self, on_book: Any, on_model: Any) -> tuple[Any, Any]:
        """Run both; when one refuses, the other must refuse with the same code."""
        model_error: RefError | None = None
        book_error: BaseException | None = None
        model_result = book_result = None
        try:
            model_result = on_model()
        except RefError as exc:
            model_error = exc
        before = (len(self.book.entries), self._grant_state())
        try:
            book_result = on_book()
        except Exception as exc:
            book_error = exc
        if model_error is None:
            assert book_error is None, f"book refused ({book_error!r}), model accepted"
            return book_result, model_result
        assert book_error is not None, f"model refused with {model_error.code}, book accepted"
        assert _code(book_error) == model_error.code, (book_error, model_error.code)
        for name in ("needed", "available", "held", "requested", "hold_status"):
            if name in model_error.details:
                assert isinstance(book_error, CreditbookError)
                assert book_error.details[name] == model_error.details[name], name
        assert (len(self.book.entries), self._grant_state()) == before, "a refusal changed the book"
        return None, None

    def _returned(self, postings: tuple[Posting, ...]) -> list[tuple[str, int]]:
        """Held credits an entry gives back (to available or expired), in posting order."""
        back: list[tuple[str, int]] = []
        for out, into in zip(postings[::2], postings[1::2], strict=True):
            assert out.account is Account.HELD and out.amount == -into.amount
            if into.account is not Account.USED:
                back.append((self.to_model[out.grant_id], into.amount))
        return back

    def _grant_state(self) -> dict[str, tuple[int, int, bool]]:
        return {g.id: (g.remaining, g.reserved, g.closed) for g in self.book.grants.values()}

    # ---- rules ----

    @initialize(
        target=grants,
        credits=st.sampled_from([50, 200, 1000]),
        free=st.booleans(),
    )
    def open_the_team(self, credits: int, free: bool) -> str:
        return self._issue(credits, None, free, -60, None if not free else 30 * 86_400)

    @rule(
        target=grants,
        credits=mostly([1, 2, 3, 5, 8, 13, 20, 40, 100], [400, 1500], weight=2),
        scope=st.none() | st.frozensets(st.sampled_from(FEATURE_KEYS), min_size=1, max_size=2),
        free=st.booleans(),
        start=mostly([-7200, -60, 0], [60, 3600], weight=3),
        lasts=mostly([None, 3600, 86_400, 30 * 86_400], [0, 1, 60], weight=2),
    )
    def issue_grant(
        self, credits: int, scope: frozenset[str] | None, free: bool, start: int, lasts: int | None
    ) -> str:
        return self._issue(credits, scope, free, start, lasts)

    def _issue(
        self, credits: int, scope: frozenset[str] | None, free: bool, start: int, lasts: int | None
    ) -> str:
        now = self.book.now
        effective = now + timedelta(seconds=start)
        expires = None if lasts is None else effective + timedelta(seconds=lasts)
        grant = self.book.issue(
            credits=credits,
            source=Source.GIFT if free else Source.PURCHASE,
            category=Category.FREE if free else Category.PURCHASED,
            bucket="gifted" if free else "purchased",
            scope=scope,
            effective_at=effective,
            expires_at=expires,
        )
        gid = self.model.issue(credits, scope=scope, free=free, start=effective, end=expires)
        self.to_book[gid] = grant.id
        self.to_model[grant.id] = gid
        return gid

    @rule(
        data=st.data(),
        feature=features,
        quantity=quantities,
        key=st.none() | st.sampled_from(KEYS),
    )
    def charge(self, data: st.DataObject, feature: str, quantity: int, key: str | None) -> None:
        outcome = data.draw(outcomes(feature), label="outcome")
        raw_call = data.draw(calls, label="call") if feature == "calling" else None
        if feature != "calling" and data.draw(st.integers(0, 30), label="stray call") == 0:
            raw_call = (60, True, None)  # a call given to a feature not metered by call
        call = None if raw_call is None else Call(*raw_call)
        try:
            expected, replay = self.model.charge(
                feature, quantity=quantity, outcome=outcome, call=raw_call, key=key
            )
        except RefError as exc:
            if exc.code == "idempotency_conflict":
                return  # the service refuses before the book is touched
            expected, replay = None, False
        if replay:
            assert key is not None
            assert self.first_answers[key] == expected  # the first answer, not a new charge
            return
        result, model_result = self._both(
            lambda: self.book.charge(
                feature, quantity=quantity, outcome=outcome, call=call, idempotency_key=key
            ),
            lambda: (
                expected
                if expected is not None
                else self.model.charge(feature, quantity=quantity, outcome=outcome, call=raw_call)[
                    0
                ]
            ),
        )
        if result is not None:
            self._same_outcome(result, model_result)
            assert result.entry.idempotency_key == key
            if key is not None:
                self.first_answers[key] = model_result

    @rule(
        target=holds,
        feature=features,
        quantity=quantities,
        ttl=mostly([None, 1, 60, 900, 86_400], [0, 86_401], weight=4),
        destination=st.sampled_from(DESTINATIONS),
    )
    def hold(self, feature: str, quantity: int, ttl: int | None, destination: str | None) -> Any:
        hid = f"h{self.hold_seq}"
        self.hold_seq += 1
        call = Call(0, True, destination) if feature == "calling" else None
        hold, model_hold = self._both(
            lambda: self.book.hold(feature, quantity=quantity, ttl_seconds=ttl, call=call),
            lambda: self.model.hold(
                hid, feature, quantity=quantity, ttl=ttl,
                destination=destination if feature == "calling" else None,
            ),
        )  # fmt: skip
        if hold is None:
            return multiple()
        assert hold.amount == model_hold["amount"]
        drawn = [(self.to_model[g], c) for g, c in hold.allocations]
        assert drawn == model_hold["drawn"]
        self.book_holds[hid] = hold
        return hid

    @rule(hid=holds, data=st.data())
    def capture(self, hid: str, data: st.DataObject) -> None:
        hold = self.book_holds[hid]
        quantity: int | None = None
        raw_call: tuple[int, bool, str | None] | None = None
        if hold.feature == "calling":
            raw_call = data.draw(st.none() | calls, label="call")
            outcome = data.draw(outcomes("calling"), label="outcome")
        else:
            quantity = data.draw(st.none() | st.integers(-1, hold.quantity + 2), label="quantity")
            outcome = data.draw(outcomes(hold.feature), label="outcome")
        call = None if raw_call is None else Call(*raw_call)
        result, expected = self._both(
            lambda: self.book.capture(hold, quantity=quantity, outcome=outcome, call=call),
            lambda: self.model.capture(hid, quantity=quantity, outcome=outcome, call=raw_call),
        )
        if result is not None:
            self._same_outcome(result, expected)
            assert result.entry.kind is EntryKind.CAPTURE
            assert self._returned(result.entry.postings) == expected["returned"]

    @rule(hid=holds)
    def release(self, hid: str) -> None:
        hold = self.book_holds[hid]
        entry, returned = self._both(
            lambda: self.book.release(hold), lambda: self.model.release(hid)
        )
        if entry is not None:
            assert entry.credits == hold.amount
            assert self._returned(entry.postings) == returned

    @rule(seconds=mostly([1, 30, 59, 60, 600, 3600], [86_400, 7 * 86_400], weight=2))
    def advance_clock(self, seconds: int) -> None:
        self.book.now += timedelta(seconds=seconds)
        self.model.now += timedelta(seconds=seconds)
        if self.SWEEP_HOLDS:
            swept = {e.hold_id for e in self.book.expire_holds()}
            expected = {self.book_holds[h].id for h in self.model.sweep_holds()}
            assert swept == expected
        written: dict[str, int] = {}
        for entry in self.book.expire_grants():
            # One entry per expiry instant, naming every grant it closed.
            closed = entry.meta["grant_ids"].split(",")
            assert len({self.book.grants[g].expires_at for g in closed}) == 1
            for grant_id in closed:
                written[self.to_model[grant_id]] = sum(
                    p.amount
                    for p in entry.postings
                    if p.grant_id == grant_id and p.account is Account.EXPIRED
                )
        assert written == self.model.expire_grants()

    @rule(gid=grants, credits=st.none() | st.integers(1, 150) | st.sampled_from([0, -2]))
    def revoke(self, gid: str, credits: int | None) -> None:
        entry, taken = self._both(
            lambda: self.book.revoke(self.to_book[gid], credits),
            lambda: self.model.revoke(gid, credits),
        )
        if entry is not None:
            assert entry.credits == taken

    # ---- invariants ----

    @invariant()
    def the_book_passes_the_audit(self) -> None:
        book = self.book
        assert check_invariants(book.grants.values(), book.holds.values()) == []
        assert all(e.is_balanced() for e in book.entries)
        recomputed = balances_from_postings(p for e in book.entries for p in e.postings)
        assert recomputed == {
            g.id: GrantBalance(g.amount, g.remaining, g.reserved) for g in book.grants.values()
        }
        for g in book.grants.values():
            assert 0 <= g.reserved <= g.remaining <= g.amount

    @invariant()
    def each_hold_is_resolved_at_most_once_and_never_above_its_amount(self) -> None:
        resolved: dict[str, int] = {}
        for e in self.book.entries:
            if e.kind in (EntryKind.CAPTURE, EntryKind.RELEASE):
                assert e.hold_id is not None
                resolved[e.hold_id] = resolved.get(e.hold_id, 0) + 1
        assert all(n == 1 for n in resolved.values())
        for hid, hold in self.book_holds.items():
            model_hold = self.model.holds[hid]
            assert hold.status.value == model_hold["status"]
            assert hold.captured == model_hold["captured"] <= hold.amount
            assert (hold.id in resolved) is (not hold.is_active)

    @invariant()
    def book_and_model_agree_on_every_grant_and_feature(self) -> None:
        flows: dict[tuple[str, Account], int] = {}
        for e in self.book.entries:
            for p in e.postings:
                flows[(p.grant_id, p.account)] = flows.get((p.grant_id, p.account), 0) + p.amount
        for gid, g in self.model.grants.items():
            bg = self.book.grants[self.to_book[gid]]
            assert (bg.available, bg.reserved, bg.closed) == (
                g["spendable"],
                g["held"],
                g["closed"],
            )
            assert flows.get((bg.id, Account.USED), 0) == g["used"]
            assert flows.get((bg.id, Account.EXPIRED), 0) == g["expired"]
            assert flows.get((bg.id, Account.REVOKED), 0) == g["revoked"]
        for feature in FEATURE_KEYS:
            assert self.book.available_for(feature) == self.model.available_for(feature)
        assert self.book.balance().reserved == sum(g["held"] for g in self.model.grants.values())


class BookVersusModelWithoutSweep(BookVersusModel):
    """No ``expire_holds()``: holds past their TTL stay reserved and refuse every action."""

    SWEEP_HOLDS = False


# Each access to ``.TestCase`` builds a new class: take it once, then set its settings.
test_book_agrees_with_the_reference_model = BookVersusModel.TestCase
test_book_agrees_with_the_reference_model.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

test_book_agrees_with_the_model_when_no_sweep_runs = BookVersusModelWithoutSweep.TestCase
test_book_agrees_with_the_model_when_no_sweep_runs.settings = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
