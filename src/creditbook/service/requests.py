"""The spend requests: one frozen type per operation, declared once for every entry point.

``ChargeRequest``, ``HoldRequest``, ``CaptureRequest`` and ``ReleaseRequest``
are what the library's ``charge``/``hold``/``capture``/``release`` (and their
``_async`` forms), ``charge_many`` and the HTTP routes build. Each knows:

- ``canonical()``: the dict its idempotency hash is computed from. Its keys
  and values must never change between releases: a retry sent after an
  upgrade is compared with the hash stored before it (tests/unit/test_requests.py);
- ``apply(book, uow)``: the domain call on the team's ``TeamBook`` and the
  receipt it answers (a spend touches only the book, so group commit may
  share its transaction);
- ``command()``: the ``Command`` the kernel runs, alone or in a batch.

The limits a caller meets on the way in are declared here once: the
idempotency key's length, the size of a batch, the committer's batch, and
the bounds the API's schema states for quantities and hold TTLs (the
default catalog's ``Limits``; the domain checks the loaded catalog's).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from creditbook.domain.book import ChargeResult, TeamBook
from creditbook.domain.catalog import Limits
from creditbook.domain.errors import HoldNotFound, InvalidInput
from creditbook.domain.holds import Hold
from creditbook.domain.ledger import SYSTEM, Actor
from creditbook.domain.pricing import Call
from creditbook.service.receipts import ChargeReceipt, Drawn, HoldReceipt, ReleaseReceipt
from creditbook.service.request_context import request_id_var

# ---- limits ------------------------------------------------------------------------------

MAX_KEY_LENGTH = 255  # an idempotency key: 1 to 255 characters
MAX_BATCH_ITEMS = 1000  # charges of one charge_many call / POST /v1/charges:batch
DEFAULT_MAX_BATCH = 256  # commands per group-commit transaction (at most MAX_BATCH_ITEMS)
DEFAULT_MAX_WAIT_MS = 2.0
# The bounds the API's schema states: the default catalog's limits. A spend is
# checked against the loaded catalog's limits by the domain as well.
DEFAULT_LIMITS = Limits()
MAX_QUANTITY = DEFAULT_LIMITS.max_quantity
MAX_HOLD_TTL_SECONDS = DEFAULT_LIMITS.max_hold_ttl_seconds

GROUPED_OPERATIONS = frozenset({"charge", "hold", "capture", "release"})
SPENDS = frozenset({"charge", "hold"})  # what a spending cap counts


class Receipt(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


# ---- the request hash ----------------------------------------------------------------------

# ``json.dumps`` with any non-default option builds a new encoder per call; one shared
# encoder writes the same text (stored hashes stay valid) without that cost per charge.
_CANONICAL = json.JSONEncoder(sort_keys=True, default=str)


def request_hash(operation: str, request: dict[str, Any]) -> str:
    canonical = _CANONICAL.encode({"op": operation, **request})
    return hashlib.sha256(canonical.encode()).hexdigest()


def actor_dict(actor: Actor) -> dict[str, str | None]:
    return {
        "member": actor.member_id,
        "key": actor.api_key_id,
        "job": actor.job_id,
        "operator": actor.operator,
    }


def call_dict(call: Call | None) -> dict[str, Any] | None:
    if call is None:
        return None
    return {
        "duration_seconds": call.duration_seconds,
        "answered": call.answered,
        "destination": call.destination,
    }


def check_key(idempotency_key: str | None) -> None:
    """Refuse an idempotency key outside 1 to ``MAX_KEY_LENGTH`` characters."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_KEY_LENGTH:
        raise InvalidInput(
            f"an idempotency key is 1 to {MAX_KEY_LENGTH} characters", field="idempotency_key"
        )


def checked_digest(operation: str, request: dict[str, Any], idempotency_key: str | None) -> str:
    """The request's hash for its idempotency key ("" without one); checks the key."""
    check_key(idempotency_key)
    return request_hash(operation, request) if idempotency_key else ""


# ---- what the kernel runs ------------------------------------------------------------------


@dataclass(slots=True)
class Command:
    """One team transaction's work, waiting for the kernel: alone or in a batch.

    ``apply`` changes the book (and may read through the unit of work); its
    receipt needs ``to_dict``. ``actor`` is who spends (a cap guard reads the
    caps only for a member's or a key's charges and holds).
    """

    team_id: str
    operation: str
    idempotency_key: str | None
    digest: str
    apply: Callable[[TeamBook, Any], Receipt]
    hold_ids: list[str] | None = None
    actor: Actor | None = None
    # The request that queued it (its log lines name it; the committer has none).
    request_id: str = field(default_factory=request_id_var.get)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A command's answer: the receipt (object and/or dict), or the error it raised.

    ``receipt`` is the object ``apply`` returned when this batch ran the command;
    ``data`` its dict form, present when it has an idempotency key (it is stored)
    or when the answer is a stored receipt. Serializing only what is stored saves
    a ``to_dict``/``from_dict`` round per keyless command.
    """

    data: dict[str, Any] | None = None
    error: BaseException | None = None
    receipt: Any = None

    def value(self, receipt_type: type[Any]) -> Any:
        """The receipt as ``receipt_type``; raises the command's error."""
        if self.error is not None:
            raise self.error
        if isinstance(self.receipt, receipt_type):
            return self.receipt
        return receipt_type.from_dict(self.data)

    @property
    def ok(self) -> bool:
        return self.error is None


# ---- the spend requests ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """Charge a use whose outcome is known; a non-billable outcome costs 0."""

    operation: ClassVar[str] = "charge"
    receipt_type: ClassVar[type[ChargeReceipt]] = ChargeReceipt

    team_id: str
    feature: str
    quantity: int = 1
    outcome: str | None = None
    call: Call | None = None
    actor: Actor = SYSTEM
    idempotency_key: str | None = None

    def canonical(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "quantity": self.quantity,
            "outcome": self.outcome,
            "call": call_dict(self.call),
            "actor": actor_dict(self.actor),
        }

    def apply(self, book: TeamBook, uow: object = None) -> ChargeReceipt:
        result = book.charge(
            self.feature,
            quantity=self.quantity,
            outcome=self.outcome,
            call=self.call,
            actor=self.actor,
            idempotency_key=self.idempotency_key,
        )
        return charge_receipt(book, result)

    def command(self, digest: str | None = None) -> Command:
        """``digest``: the hash when the caller computed it (``charge_many`` shares them)."""
        key = self.idempotency_key
        if digest is None:
            check_key(key)
            digest = request_hash("charge", self.canonical()) if key else ""
        return Command(self.team_id, "charge", key, digest, self.apply, None, self.actor)


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """Reserve the most the work can cost, before doing it."""

    operation: ClassVar[str] = "hold"
    receipt_type: ClassVar[type[HoldReceipt]] = HoldReceipt

    team_id: str
    feature: str
    quantity: int = 1
    ttl_seconds: int | None = None
    call: Call | None = None
    actor: Actor = SYSTEM
    idempotency_key: str | None = None

    def canonical(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "quantity": self.quantity,
            "ttl_seconds": self.ttl_seconds,
            "call": call_dict(self.call),
            "actor": actor_dict(self.actor),
        }

    def apply(self, book: TeamBook, uow: object = None) -> HoldReceipt:
        hold = book.hold(
            self.feature,
            quantity=self.quantity,
            ttl_seconds=self.ttl_seconds,
            call=self.call,
            actor=self.actor,
            idempotency_key=self.idempotency_key,
        )
        return hold_receipt(book, hold)

    def command(self) -> Command:
        key = self.idempotency_key
        digest = checked_digest("hold", self.canonical(), key) if key is not None else ""
        return Command(self.team_id, "hold", key, digest, self.apply, None, self.actor)


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """Charge what held work cost (at most the held amount), booked to the hold's owner.

    ``placed_by`` (a member id) settles the hold only if that member placed
    it; it is not part of the hash: it follows from the calling key, which is.
    """

    operation: ClassVar[str] = "capture"
    receipt_type: ClassVar[type[ChargeReceipt]] = ChargeReceipt

    team_id: str
    hold_id: str
    outcome: str | None = None
    quantity: int | None = None
    call: Call | None = None
    actor: Actor | None = None
    placed_by: str | None = None
    idempotency_key: str | None = None

    def canonical(self) -> dict[str, Any]:
        return {
            "hold_id": self.hold_id,
            "outcome": self.outcome,
            "quantity": self.quantity,
            "call": call_dict(self.call),
            "actor": actor_dict(self.actor) if self.actor else None,
        }

    def apply(self, book: TeamBook, uow: object = None) -> ChargeReceipt:
        hold = hold_in(book, self.hold_id, self.placed_by)
        result = book.capture(
            hold,
            outcome=self.outcome,
            quantity=self.quantity,
            call=self.call,
            settled_by=self.actor,
            idempotency_key=self.idempotency_key,
        )
        return charge_receipt(book, result, hold=hold)

    def command(self) -> Command:
        key = self.idempotency_key
        digest = checked_digest("capture", self.canonical(), key) if key is not None else ""
        return Command(self.team_id, "capture", key, digest, self.apply, [self.hold_id], self.actor)


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """Give back every credit a hold reserved (``placed_by``: see ``CaptureRequest``)."""

    operation: ClassVar[str] = "release"
    receipt_type: ClassVar[type[ReleaseReceipt]] = ReleaseReceipt

    team_id: str
    hold_id: str
    actor: Actor | None = None
    placed_by: str | None = None
    idempotency_key: str | None = None

    def canonical(self) -> dict[str, Any]:
        return {"hold_id": self.hold_id, "actor": actor_dict(self.actor) if self.actor else None}

    def apply(self, book: TeamBook, uow: object = None) -> ReleaseReceipt:
        hold = hold_in(book, self.hold_id, self.placed_by)
        entry = book.release(hold, settled_by=self.actor, idempotency_key=self.idempotency_key)
        return ReleaseReceipt(hold.id, book.team_id, hold.amount, hold.status.value, entry.id)

    def command(self) -> Command:
        key = self.idempotency_key
        digest = checked_digest("release", self.canonical(), key) if key is not None else ""
        return Command(self.team_id, "release", key, digest, self.apply, [self.hold_id], self.actor)


SpendRequest = ChargeRequest | HoldRequest | CaptureRequest | ReleaseRequest


@dataclass(frozen=True, slots=True)
class ChargeItem:
    """One charge of ``charge_many``; ``team_id`` defaults to the call's."""

    feature: str
    quantity: int = 1
    outcome: str | None = None
    call: Call | None = None
    actor: Actor = SYSTEM
    idempotency_key: str | None = None
    team_id: str | None = None

    def request(self, team_id: str) -> ChargeRequest:
        return ChargeRequest(
            team_id,
            self.feature,
            self.quantity,
            self.outcome,
            self.call,
            self.actor,
            self.idempotency_key,
        )


# ---- receipts from the book ----------------------------------------------------------------


def hold_in(book: TeamBook, hold_id: str, placed_by: str | None) -> Hold:
    """The hold as the team's transaction loaded it, if the caller may settle it.

    The check runs here, in the transaction that loaded the hold (alone, in a
    batch of the committer thread or of the event loop alike), and reads
    nothing more: a hold out of reach is the same ``HoldNotFound`` as one
    that does not exist, before its status is looked at.
    """
    hold = book.holds.get(hold_id)
    if hold is None or not placed_by_member(hold, placed_by):
        raise HoldNotFound(hold_id)
    return hold


def placed_by_member(hold: Hold, member_id: str | None) -> bool:
    """Whether ``member_id`` placed the hold (None: anyone of the team may reach it)."""
    return member_id is None or hold.actor.member_id == member_id


def drawn(book: TeamBook, amounts: dict[str, int]) -> tuple[Drawn, ...]:
    out = []
    for grant_id, credits in amounts.items():
        g = book.grants[grant_id]
        out.append(Drawn(grant_id, credits, g.category.value, g.bucket))
    return tuple(out)


def charge_receipt(book: TeamBook, result: ChargeResult, hold: Hold | None = None) -> ChargeReceipt:
    q = result.quote
    return ChargeReceipt(
        charge_id=result.entry.id,
        team_id=book.team_id,
        feature=q.feature,
        outcome=q.outcome,
        quantity=q.quantity,
        unit_cost=q.unit_cost,
        multiplier=q.multiplier,
        credits=result.credits,
        grants=drawn(book, result.grants),
        created_at=result.entry.created_at,
        hold_id=hold.id if hold else None,
        returned=hold.amount - result.credits if hold else 0,
    )


def hold_receipt(book: TeamBook, hold: Hold) -> HoldReceipt:
    return HoldReceipt(
        hold_id=hold.id,
        team_id=book.team_id,
        feature=hold.feature,
        credits=hold.amount,
        quantity=hold.quantity,
        expires_at=hold.expires_at,
        status=hold.status.value,
        grants=drawn(book, dict(hold.allocations)),
    )
