"""An independent reference model of one team's credits, for the state-machine test.

It is written from SPEC.md, not from ``creditbook.domain``: plain dicts, its own
spending order, holds, captures, releases, expiry, revocation and idempotent
retries, and the seed's numbers typed in again. ``test_book_state_machine``
drives it side by side with ``TeamBook``; where they disagree, one of them is
wrong. It keeps per grant what is *free to spend* and what is *held* (the book
keeps remaining and reserved), so the two cannot share a mistake of arithmetic.

Errors are reported by their public code (``RefError.code``), the contract
the API exposes, so the comparison does not depend on exception classes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypedDict

# The seed's catalog, typed in again: cost, billable outcomes, every outcome.
FEATURES: dict[str, tuple[int, frozenset[str], tuple[str, ...]]] = {
    "email_finder": (
        5,
        frozenset({"deliverable", "risky"}),
        ("deliverable", "risky", "undeliverable", "unknown", "not_found"),
    ),
    "linkedin_enrichment": (1, frozenset({"found"}), ("found", "not_found")),
    "phone_finder": (20, frozenset({"found"}), ("found", "not_found")),
    "calling": (4, frozenset({"answered"}), ("answered", "unanswered", "failed")),
    "ai_variable": (1, frozenset({"succeeded"}), ("succeeded", "failed")),
}
DEFAULT_OUTCOME = {
    "email_finder": "deliverable",
    "linkedin_enrichment": "found",
    "phone_finder": "found",
    "calling": "answered",
    "ai_variable": "succeeded",
}
TIERS = {"basic": 1, "standard": 2, "global": 4, "premium": 8}
DESTINATIONS = {
    "US": "basic", "CA": "basic", "GB": "basic", "FR": "basic", "DE": "basic",
    "ES": "standard", "IT": "standard", "NL": "standard",
    "AU": "global", "BR": "global", "IN": "global", "SG": "premium",
}  # fmt: skip
DEFAULT_TIER = "standard"
MAX_QUANTITY = 100_000
MAX_CALL_SECONDS = 86_400
DEFAULT_TTL = 900
MAX_TTL = 86_400


class RefError(Exception):
    """A refusal, by its public error code, with the details a caller would see."""

    def __init__(self, code: str, **details: Any) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details


class RefGrant(TypedDict):
    id: str
    seq: int
    scope: frozenset[str] | None
    free: bool
    start: datetime
    end: datetime | None
    spendable: int  # neither spent nor held
    held: int
    used: int
    expired: int
    revoked: int
    closed: bool


class RefHold(TypedDict):
    id: str
    feature: str
    amount: int
    quantity: int
    unit: int
    multiplier: int
    drawn: list[tuple[str, int]]  # (grant id, credits) in the order they were taken
    until: datetime
    status: str  # active | captured | released | expired
    captured: int


class Outcome(TypedDict):
    """What a charge or capture did: credits, and how many from each grant."""

    credits: int
    split: dict[str, int]
    billable: bool
    returned: list[tuple[str, int]]  # held credits given back, in the order they go back


def _whole(value: object, low: int, high: int) -> int | None:
    """``value`` when it is a whole number (not a bool) within [low, high], else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _tier(destination: str | None) -> str:
    if destination is None:
        return DEFAULT_TIER
    name = destination.strip()
    if name in TIERS:
        return name
    return DESTINATIONS.get(name.upper(), DEFAULT_TIER)


def _check_feature(feature: str) -> tuple[int, frozenset[str], tuple[str, ...]]:
    if feature not in FEATURES:
        raise RefError("unknown_feature", feature=feature)
    return FEATURES[feature]


def _check_quantity(quantity: object) -> int:
    n = _whole(quantity, 1, MAX_QUANTITY)
    if n is None:
        raise RefError("invalid_quantity")
    return n


def _check_outcome(feature: str, outcome: str) -> None:
    if outcome not in FEATURES[feature][2]:
        raise RefError("unknown_outcome", feature=feature, outcome=outcome)


class RefBook:
    """One team's grants and holds in plain dicts."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.grants: dict[str, RefGrant] = {}
        self.holds: dict[str, RefHold] = {}
        self._answers: dict[str, tuple[Any, Outcome]] = {}  # idempotency key -> first answer

    # ---- reading ----

    def usable(self, g: RefGrant) -> bool:
        if g["closed"] or self.now < g["start"]:
            return False
        return g["end"] is None or self.now < g["end"]

    def order(self, feature: str) -> list[RefGrant]:
        """Eligible grants, narrower scope, free, soonest expiry, oldest first."""
        far = datetime.max.replace(tzinfo=self.now.tzinfo)
        eligible = [
            g
            for g in self.grants.values()
            if (g["scope"] is None or feature in g["scope"]) and self.usable(g) and g["spendable"]
        ]
        return sorted(
            eligible,
            key=lambda g: (
                len(g["scope"]) if g["scope"] else 1_000_000,
                not g["free"],
                g["end"] or far,
                g["start"],
                g["seq"],
            ),
        )

    def available_for(self, feature: str) -> int:
        return sum(g["spendable"] for g in self.order(feature))

    # ---- commands ----

    def issue(
        self,
        credits: int,
        *,
        scope: frozenset[str] | None,
        free: bool,
        start: datetime,
        end: datetime | None,
    ) -> str:
        gid = f"g{len(self.grants)}"
        self.grants[gid] = RefGrant(
            id=gid, seq=len(self.grants), scope=scope, free=free, start=start, end=end,
            spendable=credits, held=0, used=0, expired=0, revoked=0, closed=False,
        )  # fmt: skip
        return gid

    def _draw(self, feature: str, credits: int) -> list[tuple[str, int]]:
        grants = self.order(feature)
        have = sum(g["spendable"] for g in grants)
        if have < credits:
            raise RefError("insufficient_credits", needed=credits, available=have)
        drawn: list[tuple[str, int]] = []
        want = credits
        for g in grants:
            n = min(want, g["spendable"])
            drawn.append((g["id"], n))
            want -= n
            if want == 0:
                break
        return drawn

    def _price(
        self,
        feature: str,
        quantity: object,
        outcome: str | None,
        call: tuple[object, bool, str | None] | None,
    ) -> tuple[int, int]:
        """(credits, quantity) for one use; raises like the catalog would."""
        cost, billable, _ = _check_feature(feature)
        if feature == "calling":
            if call is None:
                raise RefError("validation_error", field="call")
            seconds, answered, destination = call
            whole_seconds = _whole(seconds, 0, MAX_CALL_SECONDS)
            if whole_seconds is None:
                raise RefError("invalid_quantity")
            chosen = outcome if outcome is not None else ("answered" if answered else "unanswered")
            _check_outcome(feature, chosen)
            minutes = (whole_seconds + 59) // 60
            paid = chosen in billable and answered
            return (cost * minutes * TIERS[_tier(destination)] if paid else 0), minutes
        if call is not None:
            raise RefError("validation_error", field="call")
        n = _check_quantity(quantity)
        chosen = DEFAULT_OUTCOME[feature] if outcome is None else outcome
        _check_outcome(feature, chosen)
        return (cost * n if chosen in billable else 0), n

    def charge(
        self,
        feature: str,
        *,
        quantity: object = 1,
        outcome: str | None = None,
        call: tuple[object, bool, str | None] | None = None,
        key: str | None = None,
    ) -> tuple[Outcome, bool]:
        """(what the charge did, whether it is the replay of an earlier answer)."""
        request = (feature, quantity, type(quantity).__name__, outcome, call)
        if key is not None and key in self._answers:
            first_request, answer = self._answers[key]
            if first_request != request:
                raise RefError("idempotency_conflict", idempotency_key=key)
            return answer, True
        credits, _ = self._price(feature, quantity, outcome, call)
        split: dict[str, int] = {}
        if credits:
            for gid, n in self._draw(feature, credits):
                self.grants[gid]["spendable"] -= n
                self.grants[gid]["used"] += n
                split[gid] = n
        answer = Outcome(credits=credits, split=split, billable=credits > 0, returned=[])
        if key is not None:  # a refusal above stored nothing: the key stays free
            self._answers[key] = (request, answer)
        return answer, False

    def hold(
        self,
        hid: str,
        feature: str,
        *,
        quantity: object = 1,
        ttl: object = None,
        destination: str | None = None,
    ) -> RefHold:
        seconds = _whole(DEFAULT_TTL if ttl is None else ttl, 1, MAX_TTL)
        if seconds is None:
            raise RefError("invalid_quantity", field="ttl_seconds")
        cost, _, _ = _check_feature(feature)
        n = _check_quantity(quantity)
        multiplier = TIERS[_tier(destination)] if feature == "calling" else 1
        amount = cost * n * multiplier
        drawn = self._draw(feature, amount)
        for gid, c in drawn:
            self.grants[gid]["spendable"] -= c
            self.grants[gid]["held"] += c
        hold = RefHold(
            id=hid, feature=feature, amount=amount, quantity=n, unit=cost,
            multiplier=multiplier, drawn=drawn,
            until=self.now + timedelta(seconds=seconds),
            status="active", captured=0,
        )  # fmt: skip
        self.holds[hid] = hold
        return hold

    def _active(self, hold: RefHold) -> None:
        if hold["status"] != "active":
            raise RefError("hold_not_active", hold_status=hold["status"])
        if self.now >= hold["until"]:
            raise RefError("hold_not_active", hold_status="expired")

    def _give_back(self, gid: str, credits: int) -> None:
        g = self.grants[gid]
        g["held"] -= credits
        if g["closed"]:  # expired while held: the credits are written off now
            g["expired"] += credits
        else:
            g["spendable"] += credits

    def capture(
        self,
        hid: str,
        *,
        quantity: int | None = None,
        outcome: str | None = None,
        call: tuple[object, bool, str | None] | None = None,
    ) -> Outcome:
        hold = self.holds[hid]
        self._active(hold)
        feature = hold["feature"]
        if feature == "calling":
            if call is None:
                chosen = "answered" if outcome is None else outcome
                _check_outcome(feature, chosen)
                credits = hold["amount"] if chosen in FEATURES[feature][1] else 0
            else:
                credits, minutes = self._price(feature, None, outcome, call)
                if call[2] is None and credits:  # no destination: the tier held applies
                    credits = minutes * hold["unit"] * hold["multiplier"]
        else:
            if quantity is not None and quantity > hold["quantity"]:
                raise RefError(
                    "capture_exceeds_hold",
                    held=hold["amount"],
                    requested=quantity * hold["unit"] * hold["multiplier"],
                )
            n = hold["quantity"] if quantity is None else quantity
            if n == 0:
                _check_outcome(feature, DEFAULT_OUTCOME[feature] if outcome is None else outcome)
                credits = 0
            else:
                billable_credits, n = self._price(feature, n, outcome, None)
                credits = hold["unit"] * hold["multiplier"] * n if billable_credits else 0
        if credits > hold["amount"]:
            raise RefError("capture_exceeds_hold", held=hold["amount"], requested=credits)
        split: dict[str, int] = {}
        want = credits
        back: list[tuple[str, int]] = []
        for gid, held in hold["drawn"]:
            take = min(held, want)
            want -= take
            if take:
                g = self.grants[gid]
                g["held"] -= take
                g["used"] += take
                split[gid] = split.get(gid, 0) + take
            if held - take:
                back.append((gid, held - take))
        back.reverse()  # the last drawn goes back first
        for gid, n_back in back:
            self._give_back(gid, n_back)
        hold["status"] = "captured"
        hold["captured"] = credits
        return Outcome(credits=credits, split=split, billable=credits > 0, returned=back)

    def release(self, hid: str, *, status: str = "released") -> list[tuple[str, int]]:
        """Give every held credit back, last drawn first; what went back, in order."""
        hold = self.holds[hid]
        if status == "released":
            self._active(hold)
        back = list(reversed(hold["drawn"]))
        for gid, n in back:
            self._give_back(gid, n)
        hold["status"] = status
        return back

    def sweep_holds(self) -> list[str]:
        """Release every active hold past its time to live; their ids."""
        late = [h["id"] for h in self.holds.values() if h["status"] == "active"]
        late = [hid for hid in late if self.now >= self.holds[hid]["until"]]
        for hid in late:
            self.release(hid, status="expired")
        return late

    def expire_grants(self) -> dict[str, int]:
        """Close every grant past its expiry; what each wrote off."""
        written: dict[str, int] = {}
        for g in self.grants.values():
            if g["closed"] or g["end"] is None or self.now < g["end"]:
                continue
            g["closed"] = True
            written[g["id"]] = g["spendable"]
            g["expired"] += g["spendable"]
            g["spendable"] = 0
        return written

    def revoke(self, gid: str, credits: int | None = None) -> int:
        g = self.grants[gid]
        if credits is not None and _whole(credits, 1, 2**63) is None:
            raise RefError("invalid_amount")
        take = g["spendable"] if credits is None else min(credits, g["spendable"])
        g["spendable"] -= take
        g["revoked"] += take
        if g["spendable"] + g["held"] == 0:
            g["closed"] = True
        return take
